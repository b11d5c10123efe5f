"""``--workers N``: one ``python run.py``, N node processes on one listening port.

The parent binds the port, prepares what every worker shares (the data dir,
the JWT secret, the SQLite schema, the one embedded redis-server), then
starts N workers: each a full node (own node id, hub and bus subscription)
started as a fresh ``python`` with the listening sockets inherited, so the
kernel's one accept queue feeds all of them and no connection waits on a
dead worker's own queue. The parent serves nothing: it restarts a worker
that dies, supervises the embedded redis (workers see it as an external
``--redis-url``), and on SIGTERM/SIGINT stops accepting, lets every worker
drain as a single node would, then stops redis and exits 0.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Sequence

from tornado.netutil import bind_sockets

from notisync.core.auth import load_or_create_secret
from notisync.runtime.config import Settings
from notisync.runtime.embedded import EmbeddedRedis
from notisync.runtime.hygiene import secure_data_dir

log = logging.getLogger("notisync.workers")

# Environment a worker reads (set only by this module).
FDS_ENV = "NOTISYNC_WORKER_FDS"  # listening socket fds, comma-separated
READY_ENV = "NOTISYNC_WORKER_READY_FD"  # a pipe the worker writes one byte to once serving
PARENT_ENV = "NOTISYNC_WORKER_PARENT"  # the parent's pid: a worker outliving it exits

READY_TIMEOUT = 60.0  # seconds for a worker to start serving
STOP_TIMEOUT = 30.0  # a worker's own drain takes ~16 s at most (server.py)
RESTART_BACKOFF = (0.5, 10.0)  # first and longest wait between restarts of one slot
POLL = 0.05


def run(settings: Settings, argv: Sequence[str]) -> int:
    """The parent process: returns the exit code."""
    sockets = bind_sockets(settings.port, settings.host)  # first: a port in use fails fast
    try:
        return asyncio.run(_Parent(settings, list(argv), sockets).main())
    except KeyboardInterrupt:
        return 0
    finally:
        for sock in sockets:
            sock.close()


class _Parent:
    def __init__(self, settings: Settings, argv: list[str], sockets: list[socket.socket]) -> None:
        self.settings, self.argv, self.sockets = settings, argv, sockets
        external = settings.redis_url or settings.redis_sentinels
        self.embedded = EmbeddedRedis(settings.data_dir, settings.redis_maxmemory) if not external else None
        self.redis_url = settings.redis_url
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.restarts = 0

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self._prepare()
        try:
            started = await asyncio.gather(*(self._spawn(slot) for slot in range(self.settings.workers)))
            if not all(started):
                log.error("a worker failed to start; stopping")
                return 1
            log.info("%d workers serving http://%s:%d (parent pid %d)", self.settings.workers,
                     self.settings.host, self.settings.port, os.getpid())
            tasks = [asyncio.create_task(self._keep(slot)) for slot in range(self.settings.workers)]
            if self.embedded is not None:
                tasks.append(asyncio.create_task(self.embedded.supervise()))
            await self.stopping.wait()
            log.info("shutting down %d workers", len(self.procs))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return 0
        finally:
            await self._stop_all()

    async def _prepare(self) -> None:
        """Everything the workers would otherwise race for, done once before they start."""
        s = self.settings
        secure_data_dir(s.data_dir)
        if not s.jwt_secret:
            load_or_create_secret(os.path.join(s.data_dir, "jwt_secret"))
        if not s.mongo_url:  # the schema and its migrations, by one process
            from store.sqlite import SQLiteStore

            store = SQLiteStore(os.path.join(s.data_dir, "notisync.sqlite3"))
            await store.open()
            await store.close()
        if self.embedded is not None:
            self.redis_url = await self.embedded.start()

    def _command(self) -> list[str]:
        # The parent's own flags, then the ones that make a single node of
        # this worker: the last occurrence of a flag wins in argparse.
        extra = ["--workers", "1"] + (["--redis-url", self.redis_url] if self.embedded and self.redis_url else [])
        return [sys.executable, "-c", "import sys; from notisync.runtime.server import main; sys.exit(main())",
                *self.argv, *extra]

    async def _spawn(self, slot: int) -> bool:
        """Start the worker of ``slot``; True once it serves, False if it died first."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        fds = [sock.fileno() for sock in self.sockets]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, FDS_ENV: ",".join(map(str, fds)), READY_ENV: str(write_fd),
               PARENT_ENV: str(os.getpid()),
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        try:
            proc = await asyncio.create_subprocess_exec(*self._command(), env=env, pass_fds=(*fds, write_fd))
        finally:
            os.close(write_fd)
        self.procs[slot] = proc
        try:
            ready = await self._ready(proc, read_fd)
        finally:
            os.close(read_fd)
        if not ready and proc.returncode is None:  # hung in its start: not left running beside the next one
            _signal(proc, signal.SIGKILL)
            await proc.wait()
        return ready

    async def _ready(self, proc: asyncio.subprocess.Process, read_fd: int) -> bool:
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            try:
                if os.read(read_fd, 1):
                    return True
                return False  # the pipe closed: the worker exited without serving
            except BlockingIOError:
                pass
            if proc.returncode is not None:
                return False
            await asyncio.sleep(POLL)
        log.error("worker pid %d did not start serving within %.0fs", proc.pid, READY_TIMEOUT)
        return False

    async def _keep(self, slot: int) -> None:
        """Restart the slot's worker whenever it exits, until shutdown."""
        delay, longest = RESTART_BACKOFF
        while True:
            proc = self.procs[slot]
            code = await proc.wait()
            log.warning("worker pid %d exited with %s; starting another (its sockets reconnect to the others)",
                        proc.pid, _describe(code))
            while not await self._spawn(slot):
                log.warning("worker of slot %d failed to start; next try in %.1fs", slot, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, longest)
            delay = RESTART_BACKOFF[0]
            self.restarts += 1

    async def _stop_all(self) -> None:
        """Stop accepting, let every worker drain (SIGTERM), then stop the embedded redis."""
        for sock in self.sockets:
            sock.close()  # the workers' copies close as they drain; new connections are refused
        live = [p for p in self.procs.values() if p.returncode is None]
        for proc in live:
            _signal(proc, signal.SIGTERM)
        for proc in live:
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                log.error("worker pid %d still running %.0fs after SIGTERM; killing it", proc.pid, STOP_TIMEOUT)
                _signal(proc, signal.SIGKILL)
                await proc.wait()
        if self.embedded is not None:
            await self.embedded.stop()
        log.info("stopped")


def _describe(code: int) -> str:
    if code >= 0:
        return f"code {code}"
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def inherited_sockets() -> list[socket.socket] | None:
    """In a worker: the parent's listening sockets; None in a single node."""
    fds = os.environ.pop(FDS_ENV, None)
    if not fds:
        return None
    _die_with_parent()
    sockets = [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
    for sock in sockets:
        sock.setblocking(False)
    return sockets


def report_ready() -> None:
    """In a worker: tell the parent it serves (one byte on the pipe it passed)."""
    fd = os.environ.pop(READY_ENV, None)
    if fd:
        os.write(int(fd), b"1")
        os.close(int(fd))


def _die_with_parent() -> None:
    """A worker whose parent was SIGKILLed gets SIGTERM (and drains) rather than serving on, orphaned."""
    parent = int(os.environ.pop(PARENT_ENV, "0") or 0)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
