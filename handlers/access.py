"""Per-request plumbing for every route: request ids, route names, the access log.

``RequestIdTransform`` is a Tornado output transform, so it sees every
response of every handler (REST, dashboard, the /ws upgrade, errors) and
stamps ``X-Request-ID`` on it. The access log then records the route
template (``/api/v1/devices/{device_id}``, never the concrete path or its
query) with status and duration, and feeds the HTTP metrics.
"""
from __future__ import annotations

import inspect
import logging
import re
from typing import Any, Iterable

import tornado.web
from tornado.httputil import HTTPHeaders, HTTPServerRequest

from notisync.runtime import metrics
from notisync.runtime.logs import REQUEST_ID, request_id_from

UNMATCHED = "unmatched"
_GROUP = re.compile(r"\((?!\?)[^)]*\)")
_access_log = logging.getLogger("tornado.access")


class RequestIdTransform(tornado.web.OutputTransform):
    #: (compiled route, "GET, OPTIONS") for the Allow header of a 405 (RFC 9110 15.5.6).
    allow: list[tuple[re.Pattern[str], str]] = []

    def __init__(self, request: HTTPServerRequest) -> None:
        self.path = request.path
        self.request_id = request_id_from(request.headers.get("X-Request-ID"))
        request.request_id = self.request_id  # type: ignore[attr-defined]
        # The handler's task is created after this, so it inherits the id.
        REQUEST_ID.set(self.request_id)

    def transform_first_chunk(
        self, status_code: int, headers: HTTPHeaders, chunk: bytes, finishing: bool
    ) -> tuple[int, HTTPHeaders, bytes]:
        headers["X-Request-ID"] = self.request_id
        if status_code == 405 and "Allow" not in headers:
            # Tornado refuses unknown methods (TRACE) before any handler code runs.
            allowed = next((methods for pattern, methods in self.allow if pattern.fullmatch(self.path)), None)
            if allowed:
                headers["Allow"] = allowed
        return status_code, headers, chunk


def request_transform(routes: Iterable[Any]) -> type[RequestIdTransform]:
    """The transform for an application with these routes."""
    table = [(re.compile(route[0]), ", ".join(m.upper() for m in handler_methods(route[1]))) for route in routes]
    return type("RequestTransform", (RequestIdTransform,), {"allow": table})


def handler_methods(handler: type) -> list[str]:
    """The HTTP methods a handler class implements itself."""
    base = tornado.web.RequestHandler
    return [m for m in ("get", "head", "post", "put", "patch", "delete", "options")
            if getattr(handler, m) is not getattr(base, m)]


def template(pattern: str, handler: type) -> str:
    """``/api/v1/devices/([^/]+)`` -> ``/api/v1/devices/{device_id}``.

    Parameter names come from the handler's methods, so the route label of
    the metrics and the OpenAPI path are the same string.
    """
    names: list[str] = []
    for method in handler_methods(handler):
        params = list(inspect.signature(getattr(handler, method)).parameters)[1:]
        names = [p for p in params if p not in ("include_body", "args", "kwargs")]
        if names:
            break
    names.reverse()  # consumed from the end, left to right
    path = _GROUP.sub(lambda _: "{%s}" % (names.pop() if names else "param"), pattern)
    return path.rstrip("$")


def route_templates(routes: Iterable[Any]) -> dict[type, str]:
    """Handler class -> its route template, for every route of the application."""
    return {route[1]: template(route[0], route[1]) for route in routes}


def route_of(handler: tornado.web.RequestHandler) -> str:
    return handler.settings.get("route_templates", {}).get(type(handler), UNMATCHED)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """One access record per request: route template, never the query (it can hold tokens or search terms)."""
    status = handler.get_status()
    request = handler.request
    route = route_of(handler)
    seconds = request.request_time()
    metrics.hooks.http_request(route, request.method or "", status, seconds)
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    if not _access_log.isEnabledFor(level):
        return
    ms = round(1000.0 * seconds, 2)
    _access_log.log(
        level, "%d %s %s (%s) %.2fms", status, request.method, request.path, request.remote_ip, ms,
        extra={"method": request.method, "route": route, "status": status, "duration_ms": ms,
               "remote_ip": request.remote_ip,
               "request_id": getattr(request, "request_id", None)},
    )
