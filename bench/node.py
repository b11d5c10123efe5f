"""A NotiSync node as a subprocess for the benchmark (bench/targets.py), and /proc sampling."""
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


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
                "--post-rate", "0",  # the benchmark measures delivery, not the per-user post limit
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
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
    return not zombie and b"redis-server" in cmdline and data_dir.encode() in cmdline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- /proc sampling --------------------------------------------------------------------
def proc_sample(pid: int | None) -> dict[str, float] | None:
    """CPU seconds (utime+stime) and RSS of a live process, or None."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # the command name may contain spaces
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    # after ")" the fields start at field 3 (state), so utime (14) and stime (15) are at 11 and 12
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return {"cpu_s": cpu, "rss_mb": rss_pages * PAGE_KB / 1024, "t": time.time()}


def machine_sample() -> dict[str, float] | None:
    """Busy CPU seconds of the whole machine (all cores), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return {"cpu_s": (sum(ticks[:8]) - idle) / CLK_TCK, "rss_mb": 0.0, "t": time.time()}


def usage(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any] | None:
    if not before or not after:
        return None
    wall = max(after["t"] - before["t"], 1e-9)
    return {"cpu_pct": round((after["cpu_s"] - before["cpu_s"]) / wall * 100, 1),
            "rss_mb_before": round(before["rss_mb"], 1), "rss_mb_after": round(after["rss_mb"], 1)}
