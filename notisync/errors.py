"""Domain errors: one exception type carrying an HTTP status and a stable code.

Handlers turn an ``ApiError`` into the SPEC's error shape; the WebSocket
handler turns it into an ``error`` frame. Nothing here knows about Tornado.
"""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        fields: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.fields = fields
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            err["fields"] = self.fields
        return err


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class ValidationFailed(ApiError):
    status, code = 400, "validation_error"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooLarge(ApiError):
    status, code = 413, "payload_too_large"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "service_unavailable"


def dependency_failure(exc: BaseException) -> ApiError | None:
    """Map a failure of Redis or the database to a 503, or None if it is not one.

    Imports are local so this module stays free of driver dependencies.
    """
    import sqlite3

    from redis.exceptions import RedisError

    if isinstance(exc, (RedisError, ConnectionError, TimeoutError)):
        return Unavailable("real-time service unavailable; retry", code="redis_unavailable")
    if isinstance(exc, sqlite3.OperationalError):
        return Unavailable("database unavailable; retry", code="store_unavailable")
    try:
        from pymongo.errors import PyMongoError
    except ImportError:  # pragma: no cover - pymongo comes with motor
        return None
    if isinstance(exc, PyMongoError):
        return Unavailable("database unavailable; retry", code="store_unavailable")
    return None
