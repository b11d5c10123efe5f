"""make_app: every route and every Tornado setting, built in one place."""
from __future__ import annotations

import tornado.web

from handlers import auth, devices, health, notifications, stats, web, ws
from handlers.base import NotFoundHandler, log_request
from notisync.runtime.services import Services


def make_app(services: Services) -> tornado.web.Application:
    s = services.settings
    routes = auth.routes + devices.routes + notifications.routes + stats.routes + health.routes + ws.routes + web.routes
    return tornado.web.Application(
        routes,
        services=services,
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        # Tornado's own heartbeat and frame limit (a larger frame closes with 1009).
        websocket_ping_interval=s.ws_ping_interval,
        websocket_ping_timeout=s.ws_ping_timeout,
        websocket_max_message_size=s.ws_max_message_size,
        # Frames/s each socket may send (burst 4x); 0 = unlimited.
        ws_rate_limit=s.ws_rate_limit,
    )
