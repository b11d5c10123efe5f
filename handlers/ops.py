"""Operator endpoints: GET /metrics (Prometheus text format), GET /api/v1/openapi.json."""
from __future__ import annotations

import functools
import hmac
from typing import Any

from handlers.base import BaseHandler
from notisync.errors import Unauthorized
from notisync.openapi.document import build
from notisync.runtime import metrics


class MetricsHandler(BaseHandler):
    """Open by default; with --metrics-token, only for ``Authorization: Bearer <token>``."""

    auth_required = False

    async def prepare(self) -> None:
        await super().prepare()
        expected = self.services.settings.metrics_token
        if expected is None:
            return
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise Unauthorized("metrics need the metrics bearer token", code="invalid_token")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:  # send_error cleared the headers set in prepare
            self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
        super().write_error(status_code, **kwargs)

    def get(self) -> None:
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.finish(metrics.render())


class OpenApiHandler(BaseHandler):
    auth_required = False

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.respond(200, _document(self.services.settings.metrics))


@functools.cache
def _document(metrics_enabled: bool) -> dict[str, Any]:
    return build(metrics=metrics_enabled)


def routes(settings: Any) -> list[tuple[str, type]]:
    found: list[tuple[str, type]] = [(r"/api/v1/openapi.json", OpenApiHandler)]
    if settings.metrics:
        found.append((r"/metrics", MetricsHandler))
    return found
