"""make_app: every route and every Tornado setting, built in one place."""
from __future__ import annotations

import tornado.web

from handlers import auth, devices, health, notifications, ops, rules, stats, web, ws
from handlers.access import log_request, request_transform, route_templates
from handlers.base import NotFoundHandler
from notisync.runtime import metrics
from notisync.runtime.config import Settings
from notisync.runtime.services import Services


def all_routes(settings: Settings) -> list[tuple]:
    """Every route of the application (the OpenAPI test checks the document against this)."""
    routes = auth.routes + devices.routes + notifications.routes + rules.routes + stats.routes + health.routes + ws.routes + web.routes
    return routes + ops.routes(settings)


def make_app(services: Services) -> tornado.web.Application:
    s = services.settings
    routes = all_routes(s)
    if s.metrics and metrics.registry is None:
        metrics.enable(services.hub, s.node_id)
    return tornado.web.Application(
        routes,
        transforms=[request_transform(routes)],
        services=services,
        route_templates=route_templates(routes),
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        # Tornado's own heartbeat and frame limit (a larger frame closes with 1009).
        websocket_ping_interval=s.ws_ping_interval,
        websocket_ping_timeout=s.ws_ping_timeout,
        websocket_max_message_size=s.ws_max_message_size,
        # Frames/s each socket may send (burst 4x); 0 = unlimited.
        ws_rate_limit=s.ws_rate_limit,
    )
