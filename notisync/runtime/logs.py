"""Log set-up: text for people, or one JSON object per line for collectors.

Every record carries the node id and, inside a request (or a socket opened
by one), the request id the client saw in ``X-Request-ID``. Access records
add ``method``, ``route``, ``status`` and ``duration_ms``.

What must never reach a log: tokens, passwords, notification content and
search terms. Handlers never log bodies; on top of that, every formatted
message and traceback passes through ``redact`` (query parameters such as
``token=`` and ``q=``, bearer headers), so even Tornado's own "uncaught
exception GET /path?q=…" lines cannot carry them.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from typing import Any

# Set when a request starts (handlers/access.py); tasks started from the
# request inherit it, so a socket's records carry its upgrade's id.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# Query parameters and JSON keys whose values are secret or user content.
_SECRET_KEYS = r"token|access_token|refresh_token|ticket|password|current_password|new_password|q|key"
_QUERY_RE = re.compile(r"(?i)([?&](?:%s)=)[^&\s\"']*" % _SECRET_KEYS)
_JSON_RE = re.compile(r'(?i)("(?:%s|body|title|reply_text)"\s*:\s*)"(?:[^"\\]|\\.)*"' % _SECRET_KEYS)
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+")
# Access-record fields copied into JSON when a record has them.
_EXTRA_FIELDS = ("method", "route", "status", "duration_ms", "remote_ip")


def request_id_from(incoming: str | None) -> str:
    """The client's X-Request-ID if it is sane (≤ 128 of [A-Za-z0-9._:-]), else a new one."""
    if incoming and _SANE_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def redact(text: str) -> str:
    text = _QUERY_RE.sub(r"\1***", text)
    text = _JSON_RE.sub(r'\1"***"', text)
    return _BEARER_RE.sub(r"\1***", text)


class ContextFilter(logging.Filter):
    """Stamps node id and request id on every record (attached to the handler)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node_id = self.node_id
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "node_id": getattr(record, "node_id", None),
            "request_id": getattr(record, "request_id", None),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None)
        return redact(f"{text} [req {rid}]" if rid else text)


def configure(settings: Any) -> None:
    """Root logging for the node, from ``--log-level`` and ``--log-format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter(settings.node_id))
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, settings.log_level, logging.INFO))
    # Python warnings become records too, so a JSON log stays one object per line.
    logging.captureWarnings(True)
    warn_if_unencrypted(settings)


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _beyond_loopback(host: str) -> bool:
    return not (host in _LOOPBACK or host.startswith("127."))


def warn_if_unencrypted(settings: Any) -> None:
    """Warnings an operator exposing the node should read, one line each."""
    if not _beyond_loopback(settings.host):
        return
    warn = logging.getLogger("notisync.runtime").warning
    if not (settings.behind_proxy or settings.proxied):
        warn("listening on %s over plain HTTP: tokens, passwords and notifications cross the network "
             "unencrypted, and behind a proxy every client would have the proxy's address. Put a "
             "TLS-terminating proxy in front (see deploy/) and start with --trusted-proxies ADDRESS "
             "(NOTISYNC_TRUSTED_PROXIES).", settings.host)
    if getattr(settings, "signup", "open") == "open" and "*" in settings.allowed_origins:
        warn("listening on %s with open sign-up and CORS for every origin: anyone who reaches it can make "
             "an account. Consider --signup closed (accounts via `adduser`) and --allowed-origins.",
             settings.host)
