"""One typed settings object, built from command-line flags and environment.

Every flag has an environment variable (SPEC "Running it"); a flag given on
the command line wins over the environment, which wins over the default.
"""
from __future__ import annotations

import argparse
import os
import sys
import uuid
from dataclasses import dataclass, field
from typing import NoReturn, Sequence

from notisync import __version__
from notisync.runtime.limits import LIMIT_FLAGS, check as check_limits
from notisync.runtime.ops_settings import OPS_FLAGS, OpsSettings, check as check_ops, yes
from notisync.runtime.redis_topology import SENTINEL_FLAGS, check as check_redis


@dataclass
class Settings(OpsSettings):
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "./data"
    mongo_url: str | None = None
    redis_url: str | None = None
    redis_sentinels: str | None = None  # host:port,… (notisync/runtime/redis_topology.py)
    redis_master: str | None = None
    redis_wait: int = 0  # replicas WAITed for after each fan-out append; 0: off
    redis_cluster: bool = False  # --redis-url names a Redis Cluster node
    jwt_secret: str | None = None
    allowed_origins: list[str] = field(default_factory=lambda: ["*"])
    log_level: str = "INFO"
    # "closed": POST /auth/register answers 403 signup_closed; `run.py adduser` makes accounts.
    signup: str = "open"
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
    event_loop: str = "auto"
    # Under load, how long a SQLite write batch or a Redis fan-out batch may
    # wait for company (store/batching.py). Off by default: at 500
    # notifications/s, 2 ms saved 8 % of the CPU per notification on a loaded
    # machine, nothing clear on a quiet one, and added ~4.6 ms to the median
    # latency (README, design notes: eighth pass).
    batch_linger_ms: float = 0.0
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
    # Seconds between checks for due daily digests (notisync/core/digest.py).
    digest_interval: float = 20.0
    # Node processes behind the one port (notisync/runtime/workers.py); 1: this process serves.
    workers: int = 1

    @property
    def batch_linger(self) -> float:
        """--batch-linger-ms in seconds."""
        return self.batch_linger_ms / 1000.0

    def origin_allowed(self, origin: str | None) -> bool:
        if "*" in self.allowed_origins or not origin:
            return True
        return origin.rstrip("/") in self.allowed_origins


EVENT_LOOPS = ("auto", "asyncio", "uvloop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SIGNUP_MODES = ("open", "closed")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
MONGO_SCHEMES = ("mongodb://", "mongodb+srv://")
MAX_LINGER_MS = 50.0


def worker_count(value: object) -> int:
    """``--workers``: a positive number, or ``auto`` for the number of cores."""
    if str(value).strip().lower() == "auto":
        return os.cpu_count() or 1
    n = int(str(value))
    if n < 1:
        raise ValueError("--workers must be at least 1 (or auto)")
    return n


# flag name -> (env var, type, help)
_FLAGS: dict[str, tuple[str, type, str]] = {
    "host": ("NOTISYNC_HOST", str, "address to listen on"),
    "port": ("NOTISYNC_PORT", int, "port to listen on"),
    "data-dir": ("NOTISYNC_DATA_DIR", str, "where the SQLite file, the embedded redis and the JWT secret live"),
    "mongo-url": ("NOTISYNC_MONGO_URL", str, "mongodb://… (default: SQLite in --data-dir)"),
    "redis-url": ("NOTISYNC_REDIS_URL", str, "redis://… (default: a private redis-server in --data-dir)"),
    "jwt-secret": ("NOTISYNC_JWT_SECRET", str, "HS256 secret (default: generated once into --data-dir)"),
    "allowed-origins": ("NOTISYNC_ALLOWED_ORIGINS", str, "comma-separated origins allowed for CORS and /ws, or *"),
    "log-level": ("NOTISYNC_LOG_LEVEL", str, "DEBUG, INFO, WARNING or ERROR"),
    "signup": ("NOTISYNC_SIGNUP", str, "open, or closed: POST /auth/register answers 403 and accounts are"
                                       " made with `run.py adduser EMAIL`"),
    "ws-ping-interval": ("NOTISYNC_WS_PING_INTERVAL", float, "seconds between websocket pings"),
    "ws-ping-timeout": ("NOTISYNC_WS_PING_TIMEOUT", float, "seconds to wait for a pong (at most the interval)"),
    "event-loop": ("NOTISYNC_EVENT_LOOP", str, "auto (uvloop where installed, else asyncio), asyncio or uvloop"),
    "batch-linger-ms": ("NOTISYNC_BATCH_LINGER_MS", float,
                        "under load (calls under 10 ms apart), ms a SQLite write batch or a Redis fan-out batch"
                        " waits for more calls to join it (0-50; 0: never waits)"),
    "ws-rate-limit": ("NOTISYNC_WS_RATE_LIMIT", float, "frames/s a socket may send, burst 4x; 0 disables the limit"),
    "access-token-ttl": ("NOTISYNC_ACCESS_TOKEN_TTL", int, "seconds an access token lives (at least 10)"),
    "digest-interval": ("NOTISYNC_DIGEST_INTERVAL", float, "seconds between checks for due daily digests"),
    "workers": ("NOTISYNC_WORKERS", worker_count, "node processes sharing the port, or auto (one per core)"),
    **SENTINEL_FLAGS,
    **OPS_FLAGS,
    **LIMIT_FLAGS,
}


class SettingsParser(argparse.ArgumentParser):
    """Every mistake in the flags or the environment is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def prog_name() -> str:
    """``run.py`` or ``notisync-server``: the name the operator typed."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and not name.startswith("-") and name != "__main__.py" else "run.py"


def build_parser(prog: str | None = None) -> SettingsParser:
    parser = SettingsParser(prog=prog or prog_name(), description="NotiSync server: one node.",
                            epilog="Create an account while sign-up is closed: %(prog)s adduser EMAIL"
                                   " (same --data-dir / --mongo-url flags).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    defaults = Settings()
    for name, (env, typ, help_text) in _FLAGS.items():
        attr = name.replace("-", "_")
        default = getattr(defaults, attr)
        if isinstance(default, list):
            default = ",".join(default)
        shown = _shown(default)
        parser.add_argument(
            f"--{name}",
            type=typ,
            default=_from_env(parser, env, typ, default),
            help=f"{help_text} [{'default: ' + shown + '; ' if shown else ''}env {env}]",
            **({"nargs": "?", "const": "on"} if typ is yes else {}),  # --behind-proxy alone means on
        )
    return parser


def _shown(default: object) -> str:
    if default is None or default == "":
        return ""
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)


def _from_env(parser: SettingsParser, env: str, typ: type, default: object) -> object:
    """The environment's value, converted here so a bad one is reported by its variable's name."""
    raw = os.environ.get(env)
    if raw is None:
        return default
    try:
        return typ(raw)
    except (TypeError, ValueError):
        kind = "on/off value" if typ is yes else f"{getattr(typ, '__name__', typ)}"
        parser.error(f"environment variable {env}={raw!r} is not a valid {kind}")


def parse_settings(argv: Sequence[str] | None = None, prog: str | None = None) -> Settings:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    values = vars(args)
    origins = [o.strip().rstrip("/") for o in str(values.pop("allowed_origins")).split(",") if o.strip()]
    settings = Settings(**{k: _coerce(k, v) for k, v in values.items()}, allowed_origins=origins or ["*"])
    if (problem := _check(settings)) is not None:
        parser.error(problem)
    settings.ws_ping_timeout = min(settings.ws_ping_timeout, settings.ws_ping_interval)
    settings.ws_rate_limit = max(settings.ws_rate_limit, 0.0)
    settings.digest_interval = min(max(settings.digest_interval, 0.2), 3600.0)
    settings.presence_ttl = max(3 * settings.ws_ping_interval, 10.0)
    # Absolute from here on: the log names the dir that is really used, even
    # when the node was started from another directory.
    settings.data_dir = os.path.abspath(os.path.expanduser(settings.data_dir))
    return settings


def _check(settings: Settings) -> str | None:
    """Normalise in place; the first problem as one line naming the flag and its variable."""
    settings.log_level = str(settings.log_level).upper()
    settings.event_loop = settings.event_loop.lower()
    settings.signup = str(settings.signup).strip().lower()
    settings.mongo_url = settings.mongo_url or None
    settings.redis_url = settings.redis_url or None
    settings.jwt_secret = settings.jwt_secret or None
    if settings.log_level not in LOG_LEVELS:
        return f"--log-level (NOTISYNC_LOG_LEVEL) must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level.lower()!r}"
    if settings.event_loop not in EVENT_LOOPS:
        return f"--event-loop (NOTISYNC_EVENT_LOOP) must be one of {', '.join(EVENT_LOOPS)}"
    if settings.signup not in SIGNUP_MODES:
        return f"--signup (NOTISYNC_SIGNUP) must be one of {', '.join(SIGNUP_MODES)}, not {settings.signup!r}"
    if not 0 < settings.port < 65536:
        return f"--port (NOTISYNC_PORT) must be between 1 and 65535, not {settings.port}"
    if settings.redis_url and not settings.redis_url.startswith(REDIS_SCHEMES):
        return (f"--redis-url (NOTISYNC_REDIS_URL) must start with {', '.join(REDIS_SCHEMES)}:"
                f" {settings.redis_url!r} is not a redis URL")
    if settings.mongo_url and not settings.mongo_url.startswith(MONGO_SCHEMES):
        return (f"--mongo-url (NOTISYNC_MONGO_URL) must start with {' or '.join(MONGO_SCHEMES)}:"
                f" {settings.mongo_url!r} is not a MongoDB URL")
    if not 0 <= settings.batch_linger_ms <= MAX_LINGER_MS:
        return f"--batch-linger-ms (NOTISYNC_BATCH_LINGER_MS) must be between 0 and {MAX_LINGER_MS:g}"
    if settings.access_token_ttl < 10:
        return "--access-token-ttl (NOTISYNC_ACCESS_TOKEN_TTL) must be at least 10 seconds"
    return check_ops(settings) or check_limits(settings) or check_redis(settings)


def _coerce(name: str, value: object) -> object:
    # Environment values arrive as strings; argparse only converts flags.
    typ = _FLAGS[name.replace("_", "-")][1]
    return typ(value) if value is not None and not (isinstance(typ, type) and isinstance(value, typ)) else value
