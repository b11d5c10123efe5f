"""The flags of SPEC "Limits" and the start-up checks of the hygiene rules.

Kept beside ``notisync.runtime.config`` (which merges the flags into its
table) so the bounds a node enforces are listed in one place.
"""
from __future__ import annotations

import re
from typing import Any

# A user may post this many notifications at once before the rate applies.
POST_BURST_FACTOR = 5.0
# Post-rate tokens a node may take in one Redis call and spend locally within a
# second (store/ratelimit.py): a steady poster's check then mostly skips Redis.
POST_RESERVE = 4
# HS256 with a short secret can be brute-forced offline from any one token.
MIN_JWT_SECRET_BYTES = 32
_MEMORY = re.compile(r"^\d+(b|kb|mb|gb)?$")

# flag name -> (env var, type, help); merged into notisync.runtime.config's flags.
LIMIT_FLAGS: dict[str, tuple[str, type, str]] = {
    "max-devices": ("NOTISYNC_MAX_DEVICES", int, "live devices per user (POST /devices 409 past it); 0 disables"),
    "max-sockets-per-device": ("NOTISYNC_MAX_SOCKETS_PER_DEVICE", int,
                               "open sockets per device on this node; the oldest is closed (1008 replaced); 0 disables"),
    "post-rate": ("NOTISYNC_POST_RATE", float,
                  f"notifications/s per user, REST and /ws together, burst {POST_BURST_FACTOR:g}x; 0 disables"),
    "login-rate": ("NOTISYNC_LOGIN_RATE", str,
                   "failed logins a minute per email+address and per address, as A,B (5,30); 0 disables"),
    "register-rate": ("NOTISYNC_REGISTER_RATE", float, "registrations an hour per address; 0 disables"),
    "http-timeout": ("NOTISYNC_HTTP_TIMEOUT", float,
                     "seconds for a request's headers and body (idle keep-alive: 60); 0: Tornado's defaults"),
    "max-connections-per-address": ("NOTISYNC_MAX_CONNECTIONS_PER_ADDRESS", int,
                                    "open connections per client address, /ws included (off with --behind-proxy);"
                                    " 0 disables"),
    "hash-concurrency": ("NOTISYNC_HASH_CONCURRENCY", int,
                         "password hashes at once (0: 2 x CPUs); 4 x that may wait, then 503 busy"),
    "outbox-bytes": ("NOTISYNC_OUTBOX_BYTES", int,
                     "bytes queued for one socket and not yet written before it is closed (1013); 0 disables"),
    "redis-maxmemory": ("NOTISYNC_REDIS_MAXMEMORY", str,
                        "embedded redis maxmemory (e.g. 512mb), noeviction: writes then get 503; 0 disables"),
}


def check(settings: Any) -> str | None:
    """Normalise the limit values in place; a one-line error if one is invalid."""
    settings.max_devices = max(int(settings.max_devices), 0)
    settings.max_sockets_per_device = max(int(settings.max_sockets_per_device), 0)
    settings.post_rate = max(float(settings.post_rate), 0.0)
    settings.http_timeout = max(float(settings.http_timeout), 0.0)
    settings.max_connections_per_address = max(int(settings.max_connections_per_address), 0)
    settings.hash_concurrency = max(int(settings.hash_concurrency), 0)
    settings.register_rate = max(float(settings.register_rate), 0.0)
    try:
        login_rates(settings.login_rate)
    except ValueError:
        return f"--login-rate must be two counts like 5,30 (or 0), not {settings.login_rate!r}"
    settings.outbox_bytes = max(int(settings.outbox_bytes), 0)
    settings.redis_maxmemory = str(settings.redis_maxmemory).strip().lower().replace(" ", "")
    if not _MEMORY.match(settings.redis_maxmemory):
        return f"--redis-maxmemory must be a size like 512mb or 0, not {settings.redis_maxmemory!r}"
    secret = settings.jwt_secret
    if secret and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        return (f"--jwt-secret (NOTISYNC_JWT_SECRET) must be at least {MIN_JWT_SECRET_BYTES} bytes;"
                " generate one with: openssl rand -hex 32")
    return None


def login_rates(value: str) -> tuple[int, int]:
    """``--login-rate``: failures a minute per email+address, per address ("0" turns both off)."""
    parts = [int(p) for p in str(value).replace(" ", "").split(",")]
    if parts == [0]:
        return 0, 0
    if len(parts) != 2 or min(parts) < 0:
        raise ValueError(value)
    return parts[0], parts[1]
