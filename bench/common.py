"""Small helpers shared by the benchmarks (bench/*.py) and their generator processes:
percentiles, HTTP, /proc sampling, the --quick option and the results file."""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
HTTP_TIMEOUT = 30.0
PASSWORD = "bench-password-1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def summarize(values: list[float], scale: float = 1000.0) -> dict[str, Any]:
    """Nearest-rank percentiles, scaled to ms by default."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] * scale, 3)

    return {
        "n": n, "mean": round(sum(ordered) / n * scale, 3), "p50": rank(0.50), "p90": rank(0.90),
        "p99": rank(0.99), "p99_9": rank(0.999), "max": round(ordered[-1] * scale, 3),
    }


async def http(base: str, method: str, path: str, body: Any = None, token: str | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    data = json.dumps(body) if body is not None else (b"" if method in ("POST", "PUT") else None)
    req = HTTPRequest(base + path, method=method, body=data, headers=hdrs,
                      request_timeout=HTTP_TIMEOUT, connect_timeout=HTTP_TIMEOUT)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    try:
        parsed = json.loads(resp.body) if resp.body else None
    except ValueError:
        parsed = resp.body[:200].decode(errors="replace")
    return resp.code, parsed


def error_code(status: int, body: Any) -> str:
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return f"http_{status}:{code or 'no_code'}"


def environment() -> dict[str, Any]:
    """What was measured: commit (and whether the tree had edits), Python, CPUs, load."""

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", ROOT, *cmd], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": sys.version.split()[0], "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
            "loadavg": os.getloadavg(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


# -- the command line and the results file ------------------------------------------------
def add_load_arguments(p: argparse.ArgumentParser, users: int, runs: int, duration: float, drain: float,
                       devices: int = 5) -> None:
    """The shape of a generator-driven run: who connects, how often and how long it is measured."""
    p.add_argument("--users", type=int, default=users)
    p.add_argument("--devices", type=int, default=devices, help="per user: one phone and D-1 receivers")
    p.add_argument("--runs", type=int, default=runs, help="interleaved repetitions")
    p.add_argument("--duration", type=float, default=duration, help="seconds per measured window")
    p.add_argument("--drain", type=float, default=drain, help="seconds allowed for the last deliveries")


def parse_with_quick(p: argparse.ArgumentParser, argv: list[str] | None, help: str = "a smoke run",
                     **quick: Any) -> argparse.Namespace:
    """Add ``--quick``: the ``quick`` defaults instead (flags given explicitly still win)."""
    p.add_argument("--quick", action="store_true", help=help)
    if p.parse_known_args(argv)[0].quick:
        p.set_defaults(**quick)
    return p.parse_args(argv)


def results_path(name: str, ext: str = ".json") -> str:
    """bench/results/<name>-<time><ext>, the folder made if need be."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    return os.path.join(RESULTS_DIR, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}{ext}")


def write_results(name: str, data: Any) -> str:
    path = results_path(name)
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return path


# -- /proc sampling ------------------------------------------------------------------------
def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may contain spaces): field 3 (state) first."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """utime (field 14) + stime (field 15) of a process; OSError once it is gone."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_sample(pid: int | None) -> dict[str, float] | None:
    """CPU seconds (utime+stime) and RSS of a live process, or None."""
    if pid is None:
        return None
    try:
        cpu = cpu_seconds(pid)
        with open(f"/proc/{pid}/statm") as f:
            rss_pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return {"cpu_s": cpu, "rss_mb": rss_pages * PAGE_KB / 1024, "t": time.time()}


def machine_sample() -> dict[str, float] | None:
    """Busy CPU seconds of the whole machine (all cores), and the steal among them, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    steal = ticks[7] if len(ticks) > 7 else 0
    return {"cpu_s": (sum(ticks[:8]) - idle) / CLK_TCK, "steal_s": steal / CLK_TCK, "rss_mb": 0.0, "t": time.time()}


def machine_usage(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float | None]:
    """busy_pct (all cores, 100 = one core) and steal_pct between two machine samples.

    Steal is CPU time the hypervisor gave another guest while this VM had
    work to run: on this shared machine, windows with a few percent of it
    showed two to six times the delivery latency of windows without, for
    every process alike, so it is reported with every window.
    """
    if not before or not after:
        return {"busy_pct": None, "steal_pct": None}
    wall = max(after["t"] - before["t"], 1e-9)
    return {"busy_pct": round((after["cpu_s"] - before["cpu_s"]) / wall * 100, 1),
            "steal_pct": round((after["steal_s"] - before["steal_s"]) / wall * 100, 1)}
