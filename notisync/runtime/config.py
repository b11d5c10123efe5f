"""One typed settings object, built from command-line flags and environment.

Every flag has an environment variable (SPEC "Running it"); a flag given on
the command line wins over the environment, which wins over the default.
"""
from __future__ import annotations

import argparse
import os
import uuid
from dataclasses import dataclass, field
from typing import Sequence

from notisync.runtime.limits import LIMIT_FLAGS, check as check_limits
from notisync.runtime.ops_settings import OPS_FLAGS, OpsSettings, check as check_ops, yes


@dataclass
class Settings(OpsSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./data"
    mongo_url: str | None = None
    redis_url: str | None = None
    jwt_secret: str | None = None
    allowed_origins: list[str] = field(default_factory=lambda: ["*"])
    log_level: str = "INFO"
    # Tornado only lets the pong timeout be as long as the ping interval, so a
    # silent socket is closed within interval + timeout (60 s by default).
    ws_ping_interval: float = 30.0
    ws_ping_timeout: float = 30.0
    # Presence keys outlive a dead node by at most this long.
    presence_ttl: float = 90.0
    # Frames per second per socket (burst: 4x); 0 turns the limit off.
    ws_rate_limit: float = 50.0
    ws_max_message_size: int = 64 * 1024
    max_body_size: int = 64 * 1024
    event_loop: str = "asyncio"
    # Seconds an access token lives; sockets close at its expiry unless re-authenticated.
    access_token_ttl: int = 900
    node_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    key_prefix: str = "notisync"
    # Limits (SPEC "Limits"); 0 turns each off.
    max_devices: int = 100
    http_timeout: float = 10.0  # headers (first request) and bodies; idle keep-alive 60 s
    max_connections_per_address: int = 256  # TCP connections per peer address, /ws included; off behind a proxy
    max_sockets_per_device: int = 5  # per node: the oldest is closed with 1008 "replaced"
    login_rate: str = "5,30"  # failed logins a minute: per email+address, per address
    register_rate: float = 10.0  # registrations an hour per address
    hash_concurrency: int = 0  # password hashes at once (0: 2 x CPUs), 4 x that may wait, then 503 busy
    post_rate: float = 20.0  # notifications/s per user, burst POST_BURST_FACTOR x that
    outbox_bytes: int = 4 * 1024 * 1024
    redis_maxmemory: str = "512mb"  # embedded redis only

    def origin_allowed(self, origin: str | None) -> bool:
        if "*" in self.allowed_origins or not origin:
            return True
        return origin.rstrip("/") in self.allowed_origins


EVENT_LOOPS = ("asyncio", "uvloop")

# flag name -> (env var, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "host": ("NOTISYNC_HOST", str, "address to listen on"),
    "port": ("NOTISYNC_PORT", int, "port to listen on"),
    "data-dir": ("NOTISYNC_DATA_DIR", str, "where the SQLite file, the embedded redis and the JWT secret live"),
    "mongo-url": ("NOTISYNC_MONGO_URL", str, "mongodb://… (default: SQLite in --data-dir)"),
    "redis-url": ("NOTISYNC_REDIS_URL", str, "redis://… (default: a private redis-server in --data-dir)"),
    "jwt-secret": ("NOTISYNC_JWT_SECRET", str, "HS256 secret (default: generated once into --data-dir)"),
    "allowed-origins": ("NOTISYNC_ALLOWED_ORIGINS", str, "comma-separated origins allowed for CORS and /ws, or *"),
    "log-level": ("NOTISYNC_LOG_LEVEL", str, "DEBUG, INFO, WARNING, ERROR"),
    "ws-ping-interval": ("NOTISYNC_WS_PING_INTERVAL", float, "seconds between websocket pings"),
    "ws-ping-timeout": ("NOTISYNC_WS_PING_TIMEOUT", float, "seconds to wait for a pong (at most the interval)"),
    "event-loop": ("NOTISYNC_EVENT_LOOP", str, "asyncio or uvloop (needs the uvloop package)"),
    "ws-rate-limit": ("NOTISYNC_WS_RATE_LIMIT", float, "frames/s a socket may send, burst 4x; 0 disables the limit"),
    "access-token-ttl": ("NOTISYNC_ACCESS_TOKEN_TTL", int, "seconds an access token lives (at least 10)"),
    **OPS_FLAGS,
    **LIMIT_FLAGS,
}


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(prog="run.py", description="NotiSync server")
    defaults = Settings()
    for name, (env, typ, help_text) in _FLAGS.items():
        attr = name.replace("-", "_")
        default = getattr(defaults, attr)
        if attr == "allowed_origins":
            default = ",".join(default)
        parser.add_argument(
            f"--{name}",
            type=typ,
            default=os.environ.get(env, default),
            help=f"{help_text} [env {env}]",
            **({"nargs": "?", "const": "on"} if typ is yes else {}),  # --behind-proxy alone means on
        )
    args = parser.parse_args(argv)
    values = vars(args)
    origins = [o.strip().rstrip("/") for o in str(values.pop("allowed_origins")).split(",") if o.strip()]
    settings = Settings(**{k: _coerce(k, v) for k, v in values.items()}, allowed_origins=origins or ["*"])
    settings.log_level = settings.log_level.upper()
    settings.event_loop = settings.event_loop.lower()
    if settings.event_loop not in EVENT_LOOPS:
        parser.error(f"--event-loop must be one of {', '.join(EVENT_LOOPS)}")
    if (problem := check_ops(settings)) is not None:
        parser.error(problem)
    if settings.access_token_ttl < 10:
        parser.error("--access-token-ttl must be at least 10 seconds")
    if (problem := check_limits(settings)) is not None:
        parser.exit(2, f"run.py: error: {problem}\n")  # one line, no usage dump
    settings.ws_ping_timeout = min(settings.ws_ping_timeout, settings.ws_ping_interval)
    settings.ws_rate_limit = max(settings.ws_rate_limit, 0.0)
    settings.presence_ttl = max(3 * settings.ws_ping_interval, 10.0)
    settings.mongo_url = settings.mongo_url or None
    settings.redis_url = settings.redis_url or None
    settings.jwt_secret = settings.jwt_secret or None
    return settings


def _coerce(name: str, value: object) -> object:
    # Environment values arrive as strings; argparse only converts flags.
    typ = _FLAGS[name.replace("_", "-")][1]
    return typ(value) if value is not None and not (isinstance(typ, type) and isinstance(value, typ)) else value
