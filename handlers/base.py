"""The one base for every handler: services, bearer auth (deny by default),
origins, and every error — ours or Tornado's — in the SPEC's JSON shape.

``ServiceHandler`` is shared by REST (``BaseHandler``, which adds CORS and
bounded JSON bodies) and the socket endpoint (``handlers/ws.py``)."""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import tornado.web
from tornado.web import HTTPError

from notisync.core.sessions import Session
from notisync.errors import (
    ApiError, BadRequest, Forbidden, NotFound, TooLarge, Unauthorized, Unavailable, dependency_failure,
)
from notisync.hooks import hooks

if TYPE_CHECKING:  # the runtime builds the app from these handlers: no import back up
    from notisync.runtime.services import Services

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    429: "rate_limited", 503: "service_unavailable",
}


class ServiceHandler(tornado.web.RequestHandler):
    """What REST and /ws share: the node's services, the bearer token, the origin rule, the error body."""

    @property
    def services(self) -> Services:
        return self.settings["services"]

    def bearer_token(self) -> str | None:
        """The token of ``Authorization: Bearer …``, or None."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def origin_allowed(self, origin: str) -> bool:
        # Bearer tokens, never cookies, authorize requests, so a foreign
        # origin cannot ride on a user's session; the list only narrows it.
        return self.services.settings.origin_allowed(origin)

    def finish_error(self, status: int, code: str, message: str) -> None:
        """Answer with the SPEC's error shape."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(json.dumps({"error": {"code": code, "message": message}}))


@tornado.web.stream_request_body
class BaseHandler(ServiceHandler):
    #: Routes that need no token set this to False.
    auth_required = True

    user_id: str
    session: Session

    # -- plumbing -----------------------------------------------------------
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")  # JSON is never to be sniffed as HTML
        origin = self.request.headers.get("Origin")
        if origin and self.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Expose-Headers", "Retry-After, Location, X-Request-ID")

    def options(self, *args: Any) -> None:
        """CORS preflight: answered without auth, since it carries no token."""
        origin = self.request.headers.get("Origin")
        if origin and self.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Device-ID, X-Request-ID")
            self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    async def prepare(self) -> None:
        self._body = bytearray()
        self._too_large = False
        # Shutdown waits until every request counted in here is answered.
        self.services.lifecycle.begin()
        self._counted = True
        if self.services.lifecycle.draining and self.request.method != "OPTIONS":
            raise Unavailable("server shutting down; retry", code="shutting_down")
        limit = self.services.settings.max_body_size
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise TooLarge(f"request body is larger than {limit} bytes")
        if self.request.method != "OPTIONS" and self.auth_required:
            self.session = await self._authenticate()
            self.user_id = self.session.user_id

    def data_received(self, chunk: bytes) -> None:
        if self._finished or self._too_large:
            return
        if len(self._body) + len(chunk) > self.services.settings.max_body_size:
            self._too_large = True
            self._body.clear()
            return
        self._body.extend(chunk)

    async def _authenticate(self) -> Session:
        token = self.bearer_token()
        if token is None:
            raise Unauthorized("missing bearer token", code="missing_token")
        return await self.services.sessions.verify(token, "access")

    def acting_device(self, requested: str | None) -> str | None:
        """The device the caller acts as: a bound session's own (another id: 403), else ``requested``."""
        bound = self.session.device_id
        if bound is None:
            return requested
        if requested is not None and requested != bound:
            raise Forbidden("this session belongs to another device", code="device_mismatch")
        return bound

    def on_finish(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self.services.lifecycle.end()

    # -- input ----------------------------------------------------------------
    def json_body(self) -> Any:
        if self._too_large:
            raise TooLarge(f"request body is larger than {self.services.settings.max_body_size} bytes")
        if not self._body:
            raise BadRequest("request body must be JSON", code="invalid_json")
        try:
            return json.loads(bytes(self._body))
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON", code="invalid_json") from None
        except RecursionError:  # e.g. "[[[[…" nested past the parser's depth
            raise BadRequest("request body is nested too deeply", code="invalid_json") from None

    def query_params(self) -> dict[str, str]:
        """Single-valued query arguments (the last one wins if repeated)."""
        return {k: self.get_query_argument(k) for k in self.request.query_arguments}

    def device_header(self) -> str | None:
        value = self.request.headers.get("X-Device-ID")
        return value.strip() or None if value else None

    # -- output ----------------------------------------------------------------
    def respond(self, status: int, data: Any = None, location: str | None = None) -> None:
        self.set_status(status)
        if location:
            self.set_header("Location", location)
        if data is None:
            self.finish()
        else:
            self.finish(json.dumps(data, separators=(",", ":"), ensure_ascii=False))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is not None:
            hooks.error(exc)  # counts Redis/store failures, ignores the rest
        exc = dependency_failure(exc) or exc if exc is not None else None
        if isinstance(exc, ApiError):
            self.set_status(exc.status)
            if exc.retry_after is not None:
                self.set_header("Retry-After", str(exc.retry_after))
            error = exc.to_dict()
        elif status_code >= 500:
            # Never leak a traceback; the log has it.
            error = {"code": "internal_error", "message": "internal server error"}
        else:
            reason = exc.log_message if isinstance(exc, HTTPError) and exc.log_message else self._reason
            error = {"code": _STATUS_CODES.get(status_code, "error"), "message": str(reason)}
        self.finish(json.dumps({"error": error}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApiError):
            log.debug("%s %s -> %s %s", self.request.method, self.request.path, value.status, value.code)
        elif dependency_failure(value) is not None:
            log.warning("%s %s: dependency down: %r", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    """Unknown routes: a JSON 404 rather than Tornado's HTML page."""

    auth_required = False

    async def prepare(self) -> None:
        raise NotFound("no such route", code="route_not_found")

