"""The real ``notisync`` command in subprocesses: shared by tests/test_cli.py and tests/test_forward.py."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from tests.harness import ROOT, Node

STREAM = ("new_notification", "notification_sync", "sync_required")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def ok(self) -> "Result":
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return self

    def one_line_error(self) -> str:
        """A failure: non-zero status, one line on stderr, no traceback."""
        assert self.code != 0, self.out
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in self.err, self.err
        return lines[0]


class Watch:
    """A running ``notisync watch`` whose stdout is read one line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 10) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, f"watch exited {await self.proc.wait()}: {await self.stderr()}"
        return raw.decode().rstrip("\n")

    async def frame(self, timeout: float = 10) -> dict[str, Any]:
        """The next stream frame (device_status lines are live-only noise here)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = json.loads(await self.line(max(deadline - time.monotonic(), 0.01)))
            if frame["type"] in STREAM:
                return frame

    async def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        self.proc.send_signal(sig)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), 5)).decode()


@dataclass
class Cli:
    server: str
    config_dir: str
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NOTISYNC_")}
        env.update(PYTHONPATH=ROOT, NOTISYNC_CONFIG_DIR=self.config_dir, **extra)
        return env

    async def spawn(self, *args: str, program: list[str] | None = None,
                    env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        argv = [*(program or [sys.executable, "-m", "notisync"]), "--server", self.server, *args]
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env or self.env(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self.procs.append(proc)
        return proc

    async def run(self, *args: str, timeout: float = 30, **kw: Any) -> Result:
        proc = await self.spawn(*args, **kw)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        return Result(proc.returncode or 0, out.decode(), err.decode())

    async def watch(self, *args: str) -> Watch:
        return Watch(await self.spawn("watch", *args))

    def session(self) -> dict[str, Any]:
        with open(os.path.join(self.config_dir, "session.json"), encoding="utf-8") as f:
            return json.load(f)

    async def kill_all(self) -> None:
        """Teardown: no subprocess outlives its test."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def own_node(tmp_path: Any) -> AsyncIterator[tuple[Node, Cli]]:
    """A node of the test's own (for tests that stop and restart it) and a CLI pointed at it."""
    node = Node().start()
    cli = Cli(node.base, str(tmp_path / "config"))
    try:
        yield node, cli
    finally:
        await cli.kill_all()
        node.stop()
        node.kill()
        stop_embedded_redis(node.data_dir)
        shutil.rmtree(node.data_dir, ignore_errors=True)


def stop_embedded_redis(data_dir: str) -> None:
    """The node leaves its embedded redis-server running after SIGTERM (it counts
    a client that is its own): stop it, or every run leaks one process."""
    try:
        with open(os.path.join(data_dir, "redis.pid"), encoding="ascii") as f:
            os.kill(int(f.read().strip()), signal.SIGTERM)
    except (OSError, ValueError):
        pass
