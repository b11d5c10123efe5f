"""A NotiSync node as a subprocess for the benchmark (bench/targets.py)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from bench.common import ROOT, stat_fields


class ServerNode:
    """`python run.py` in its own session, so a Ctrl-C meant for us does not reach it first."""

    def __init__(self, args: list[str] | None = None, data_dir: str | None = None, root: str | None = None) -> None:
        # /tmp keeps the embedded redis unix socket path short enough. Nodes
        # given the same data dir share its SQLite file and embedded redis.
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="nsbench-", dir="/tmp")
        self.extra_args = list(args or [])
        # Another checkout's run.py (an A/B run: old tree against new, in the same windows).
        self.root = os.path.abspath(root) if root else ROOT
        self.port = free_port()
        self.log_path = os.path.join(self.data_dir, f"node-{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        args = [sys.executable, os.path.join(self.root, "run.py"), "--port", str(self.port),
                "--data-dir", self.data_dir, "--log-level", "INFO",
                # The per-user post rate stays as shipped unless a target turns it off
                # (bench/targets.py): a user's post pays its check in the case users meet.
                "--register-rate", "0",  # it registers its many users from one address
                "--max-connections-per-address", "0",  # and opens thousands of sockets from it
                *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.root, start_new_session=True,
                                         env={**os.environ, "PYTHONPATH": self.root})
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy in {timeout:g}s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def redis_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "redis.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        """SIGTERM (graceful, as the SPEC requires), then SIGKILL if it hangs.

        The SPEC says the node stops its embedded redis on SIGTERM. If the
        redis is still running afterwards, we stop it ourselves so the bench
        leaks nothing, and we report that the node left it running.
        """
        if self.proc is None:
            return {"exit_code": None, "left_redis_running": False}
        redis_pid = self.redis_pid()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return {"exit_code": self.proc.returncode, "left_redis_running": self._reap_redis(redis_pid)}

    def _reap_redis(self, pid: int | None) -> bool:
        if pid is None or not _is_our_redis(pid, self.data_dir):
            return False
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):  # up to 5 s for redis to exit
                if not _is_our_redis(pid, self.data_dir):
                    break
                time.sleep(0.05)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it exited on its own meanwhile
        return True

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-chars:]
        except OSError:
            return ""

    def log_problems(self, limit: int = 8) -> dict[str, Any]:
        """WARNING/ERROR lines from the server's log: the server's own view of the run."""
        lines = [ln for ln in self.log_tail(10_000_000).splitlines()
                 if " WARNING " in ln or " ERROR " in ln or "Traceback" in ln]
        errors = [ln for ln in lines if " WARNING " not in ln]
        return {"count": len(lines), "errors": len(errors), "first": lines[:limit], "first_errors": errors[:limit]}


def _is_our_redis(pid: int, data_dir: str) -> bool:
    """True while pid is the redis-server of this data dir (guards against a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        zombie = stat_fields(pid)[0] == "Z"
    except (OSError, IndexError):
        return False
    return not zombie and b"redis-server" in cmdline and data_dir.encode() in cmdline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
