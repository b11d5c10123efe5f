"""Settings for operating a node: log format, metrics, proxy awareness.

Kept beside ``notisync.runtime.config`` (which mixes them into ``Settings``) so the
flags of this concern live in one place.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

LOG_FORMATS = ("text", "json")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def yes(value: object) -> bool:
    """A boolean flag or environment value: 1/true/yes/on or 0/false/no/off; anything else is an error."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(f"{value!r} is not on or off")
    return word in _TRUE


@dataclass
class OpsSettings:
    log_format: str = "text"
    # "off" removes /metrics and turns every metrics hook into a no-op.
    metrics: bool = True
    # When set, GET /metrics needs "Authorization: Bearer <metrics_token>".
    metrics_token: str | None = None
    # A TLS-terminating proxy is in front: do not warn about plain HTTP. Alone
    # (no --trusted-proxies) it also trusts X-Forwarded-For / X-Real-IP from
    # any peer, as before --trusted-proxies existed.
    behind_proxy: bool = False
    # Addresses/CIDRs whose X-Forwarded-For / X-Real-IP name the client
    # (runtime/proxies.py); "*" is any peer. Empty: the peer is the client.
    trusted_proxies: list[str] = field(default_factory=list)

    @property
    def proxied(self) -> bool:
        """Some proxy's headers are trusted: the node is meant to sit behind one."""
        return bool(self.trusted_proxies)


# flag name -> (env var, type, help); merged into notisync.runtime.config's flags.
OPS_FLAGS: dict[str, tuple[str, type, str]] = {
    "log-format": ("NOTISYNC_LOG_FORMAT", str, "text or json (one JSON object per line)"),
    "metrics": ("NOTISYNC_METRICS", yes, "on or off: Prometheus metrics at GET /metrics"),
    "metrics-token": ("NOTISYNC_METRICS_TOKEN", str, "bearer token GET /metrics requires (default: open)"),
    "behind-proxy": ("NOTISYNC_BEHIND_PROXY", yes,
                     "a TLS proxy is in front: no plain-HTTP warning; without --trusted-proxies it trusts"
                     " X-Forwarded-For from any peer (like --trusted-proxies '*')"),
    "trusted-proxies": ("NOTISYNC_TRUSTED_PROXIES", str,
                        "comma-separated proxy addresses/CIDRs whose X-Forwarded-For / X-Real-IP give the"
                        " client's address (per-address limits use it); * trusts any peer"),
}


def check(settings: OpsSettings) -> str | None:
    """Normalise the values in place; an error message if one is invalid."""
    settings.log_format = str(settings.log_format).lower()
    if settings.log_format not in LOG_FORMATS:
        return f"--log-format must be one of {', '.join(LOG_FORMATS)}"
    settings.metrics = yes(settings.metrics)
    settings.behind_proxy = yes(settings.behind_proxy)
    settings.metrics_token = settings.metrics_token or None
    raw = settings.trusted_proxies
    entries = [e.strip() for e in (raw.split(",") if isinstance(raw, str) else raw) if e.strip()]
    for entry in entries:
        if entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return (f"--trusted-proxies (NOTISYNC_TRUSTED_PROXIES): {entry!r} is not an address or CIDR"
                    " (e.g. 127.0.0.1,10.0.0.0/8)")
    if not entries and settings.behind_proxy:
        entries = ["*"]  # the old meaning of --behind-proxy alone
    settings.trusted_proxies = entries
    return None
