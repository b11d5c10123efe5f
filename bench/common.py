"""Small helpers shared by the benchmark's parent and generator processes."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

HTTP_TIMEOUT = 30.0
PASSWORD = "bench-password-1"


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
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", root, *cmd], capture_output=True, text=True, timeout=5).stdout.strip()
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
