"""Starting a node the way an operator expects: fail early, in one line, with nothing left running.

Each check here runs before the embedded redis-server is spawned, so the
common mistakes (port taken, data dir not writable, --redis-url or
--mongo-url unreachable) leave nothing to clean up. Whatever fails later is
undone by ``Services.create`` and reported by ``describe`` in one line; the
traceback is logged at DEBUG only.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import tempfile
from typing import Any, Awaitable, Callable, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError
from tornado.netutil import bind_sockets

log = logging.getLogger("notisync")

T = TypeVar("T")
# How long a start waits for an external --redis-url / --mongo-url to answer.
DEPENDENCY_TIMEOUT = 3.0


class StartupError(Exception):
    """A start that cannot go on; the message is the one line the operator sees."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived before the node was serving; ``signum`` picks the exit code."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum} while starting")
        self.signum = signum


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind the port first: if it is taken, nothing else has been started yet."""
    try:
        return bind_sockets(port, host)
    except OSError as exc:
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} is already in use on {host} (another NotiSync or another program);"
                               " choose another with --port (NOTISYNC_PORT)") from None
        if exc.errno == errno.EACCES:
            raise StartupError(f"not allowed to listen on {where} (ports below 1024 need privileges)") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
            raise StartupError(f"cannot listen on {where}: --host (NOTISYNC_HOST) is not an address of this machine") from None
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None


def prepare_data_dir(path: str) -> bool:
    """Create the data dir if needed and prove it writable; True if it was created now."""
    created = not os.path.exists(path)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"data dir {path} is not usable: {reason} (--data-dir, NOTISYNC_DATA_DIR)") from None
    return created


def log_data_dir(path: str, created: bool) -> None:
    if created:
        # Started from another directory, a relative ./data is a new, empty
        # dir: say so, or it looks like every account was lost.
        log.warning("data dir %s did not exist: created it, empty (no accounts yet). If you expected existing"
                    " data, pass --data-dir with its path", path)
    else:
        log.info("data dir %s", path)


async def check_dependencies(settings: Any) -> None:
    """An external Redis or MongoDB that does not answer fails the start within seconds."""
    if settings.redis_url:
        await _check_redis(settings.redis_url)
    if settings.mongo_url:
        await _check_mongo(settings.mongo_url)


async def _check_redis(url: str) -> None:
    shown = safe_url(url)
    try:
        client = Redis.from_url(url, socket_connect_timeout=DEPENDENCY_TIMEOUT, socket_timeout=DEPENDENCY_TIMEOUT)
    except ValueError as exc:
        raise StartupError(f"--redis-url (NOTISYNC_REDIS_URL) {shown} is not valid: {exc}") from None
    try:
        await asyncio.wait_for(client.ping(), DEPENDENCY_TIMEOUT + 0.5)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        raise StartupError(f"cannot reach redis at {shown} (--redis-url): {_first_line(exc) or 'timed out'}") from None
    finally:
        await client.aclose()


async def _check_mongo(url: str) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient  # only needed with --mongo-url
    from pymongo.errors import ConfigurationError, PyMongoError

    shown = safe_url(url)
    try:
        client: Any = AsyncIOMotorClient(url, serverSelectionTimeoutMS=int(DEPENDENCY_TIMEOUT * 1000),
                                         connectTimeoutMS=int(DEPENDENCY_TIMEOUT * 1000))
    except (ConfigurationError, ValueError) as exc:
        raise StartupError(f"--mongo-url (NOTISYNC_MONGO_URL) {shown} is not valid: {_first_line(exc)}") from None
    try:
        await asyncio.wait_for(client.admin.command("ping"), DEPENDENCY_TIMEOUT + 0.5)
    except (PyMongoError, OSError, asyncio.TimeoutError) as exc:
        raise StartupError(f"cannot reach MongoDB at {shown} within {DEPENDENCY_TIMEOUT:g}s (--mongo-url):"
                           f" {_first_line(exc)[:200] or 'timed out'}") from None
    finally:
        client.close()


async def until_signalled(work: Awaitable[T], stop: asyncio.Event, signum: list[int],
                          undo: Callable[[T], Awaitable[None]]) -> T:
    """Run ``work`` unless a signal comes first: then cancel it, undo it, and raise Interrupted.

    A cancelled ``Services.create`` stops what it had started itself; if the
    cancellation came too late to land (or a library swallowed it), the
    finished result is handed to ``undo`` instead, so either way the
    embedded redis-server is stopped.
    """
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if not stop.is_set():
        return task.result()
    task.cancel()
    try:
        result = await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # failing while being cancelled: the interrupt is still the news
        log.debug("start failed while interrupted: %r", exc)
    else:
        await undo(result)
    raise Interrupted(signum[0] if signum else 2)


def describe(exc: BaseException) -> str:
    """One line for a failure ``StartupError`` did not anticipate."""
    if isinstance(exc, StartupError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc} (check the owner and mode of --data-dir)"
    if isinstance(exc, RedisError):
        return f"redis failed while starting: {_first_line(exc)}"
    return f"start failed: {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.splitlines()[0] if text else ""
    # pymongo appends its whole topology description; the cause comes first.
    return text.split(" (configured timeouts")[0].split(", Timeout: ")[0]


def safe_url(url: str) -> str:
    """The URL without a password (it may hold one: redis://:secret@host)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{scheme}{sep}{rest}"
