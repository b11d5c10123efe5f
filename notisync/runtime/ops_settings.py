"""Settings for operating a node: log format, metrics, proxy awareness.

Kept beside ``notisync.runtime.config`` (which mixes them into ``Settings``) so the
flags of this concern live in one place.
"""
from __future__ import annotations

from dataclasses import dataclass

LOG_FORMATS = ("text", "json")


def yes(value: object) -> bool:
    """A boolean flag or environment value: 1/true/yes/on."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


@dataclass
class OpsSettings:
    log_format: str = "text"
    # "off" removes /metrics and turns every metrics hook into a no-op.
    metrics: bool = True
    # When set, GET /metrics needs "Authorization: Bearer <metrics_token>".
    metrics_token: str | None = None
    # A TLS-terminating proxy is in front: trust X-Forwarded-For / X-Real-IP
    # for the client address and do not warn about plain HTTP.
    behind_proxy: bool = False


# flag name -> (env var, type, help); merged into notisync.runtime.config's flags.
OPS_FLAGS: dict[str, tuple[str, type, str]] = {
    "log-format": ("NOTISYNC_LOG_FORMAT", str, "text or json (one JSON object per line)"),
    "metrics": ("NOTISYNC_METRICS", yes, "on or off: Prometheus metrics at GET /metrics"),
    "metrics-token": ("NOTISYNC_METRICS_TOKEN", str, "bearer token GET /metrics requires (default: open)"),
    "behind-proxy": ("NOTISYNC_BEHIND_PROXY", yes, "a TLS proxy is in front: trust X-Forwarded-For, no plain-HTTP warning"),
}


def check(settings: OpsSettings) -> str | None:
    """Normalise the values in place; an error message if one is invalid."""
    settings.log_format = str(settings.log_format).lower()
    if settings.log_format not in LOG_FORMATS:
        return f"--log-format must be one of {', '.join(LOG_FORMATS)}"
    settings.metrics = yes(settings.metrics)
    settings.behind_proxy = yes(settings.behind_proxy)
    settings.metrics_token = settings.metrics_token or None
    return None
