#!/usr/bin/env python3
"""What 100 rules per user cost the ingest: server CPU per posted notification, 0 vs 100 rules.

    python bench/rules_cost.py                        # 7 interleaved rounds of 1000 posts per user
    python bench/rules_cost.py --rounds 2 --posts 200 # a smoke run
    python bench/rules_cost.py --worst                # 100 rules that all need testing

One real node (``run.py``, SQLite + embedded redis). Two users, each with a
posting phone and two other devices (one online socket, one offline), post
the same notifications over REST (16 in flight); one user has no rules, the
other 100. Rounds alternate between the users so a noisy neighbour hits
both alike. The figure is the node process's CPU (utime+stime from /proc)
per notification; the ratio is the median of per-round ratios (100 rules /
0 rules). The issue's target is a ratio of at most 1.10. Also printed: the
in-process cost of deciding one notification (``RuleSet.decide``), a
steadier figure on a shared machine. Writes bench/results/rules-cost-<time>.json.

The default rule set is what a person would write: 70 rules for named
apps, 20 ``*`` globs, 10 title/body conditions. ``--worst`` makes every
rule a glob with a title condition, so all 100 are tested per notification.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import timeit
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import cpu_seconds, write_results  # noqa: E402
from tests.harness import Node, User, new_user, ws_connect  # noqa: E402

APPS = ["Slack", "Gmail", "WhatsApp", "Calendar", "Bank", "Signal", "Jira", "GitHub", "Uber", "News"]


def rules(worst: bool) -> list[dict[str, Any]]:
    out = []
    for i in range(100):
        if worst:
            match = {"app_name": f"*app{i}*", "title_contains": f"never{i}"}
        elif i < 70:
            match = {"app_name": f"{APPS[i % len(APPS)]}{'' if i < 10 else i}"}
        elif i < 90:
            match = {"app_name": f"com.vendor{i}.*"}
        else:
            match = {"title_contains": f"keyword{i}"}
        action = [{"silent": True}, {"category": "Work"}, {"priority": 1}, {"only_device_types": ["mobile"]}][i % 4]
        out.append({"name": f"r{i}", "match": match, "action": action})
    return out


def micro(worst: bool, count: int = 20_000) -> dict[str, float]:
    from notisync.core.rules import RuleSet

    hundred = RuleSet.compile([{**r, "id": str(i), "enabled": True} for i, r in enumerate(rules(worst))])
    none = RuleSet.compile([])
    sample = {"app_name": "Slack", "title": "Standup in 5", "body": "Room 4", "priority": 0}
    return {
        "decide_us_0_rules": round(timeit.timeit(lambda: none.decide(sample, None), number=count) / count * 1e6, 2),
        "decide_us_100_rules": round(timeit.timeit(lambda: hundred.decide(sample, None), number=count) / count * 1e6, 2),
    }


async def setup(node: Node, with_rules: bool, worst: bool) -> tuple[User, str, Any]:
    user = await new_user(node)
    phone = await user.device("mobile")
    online = await user.device("desktop")
    await user.device("web")  # offline: never connects
    if with_rules:
        for rule in rules(worst):
            r = await user.call("POST", "/api/v1/rules", rule)
            assert r.status == 201, r.body
    ws = await ws_connect(node, user.token, online)
    return user, phone, ws


async def post_many(user: User, phone: str, count: int, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            body = {"app_name": APPS[i % len(APPS)], "title": f"message {i}", "body": "some text " * 5}
            r = await user.call("POST", "/api/v1/notifications", body, headers={"X-Device-ID": phone})
            assert r.status in (201, 202), r.body

    await asyncio.gather(*(one(i) for i in range(count)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    node = Node(extra=["--log-level", "WARNING", "--metrics", "off"]).start()
    try:
        assert node.proc is not None
        users = {"0": await setup(node, False, args.worst), "100": await setup(node, True, args.worst)}
        for user, phone, _ in users.values():  # warm-up: caches, connections, JIT-free but still
            await post_many(user, phone, 100, args.concurrency)
        rounds: list[dict[str, float]] = []
        for rnd in range(args.rounds):
            per: dict[str, float] = {}
            for name in (["0", "100"] if rnd % 2 == 0 else ["100", "0"]):
                user, phone, _ = users[name]
                before = cpu_seconds(node.proc.pid)
                await post_many(user, phone, args.posts, args.concurrency)
                per[name] = (cpu_seconds(node.proc.pid) - before) / args.posts * 1e6
            per["ratio"] = per["100"] / per["0"]
            rounds.append({k: round(v, 3) for k, v in per.items()})
            print(f"round {rnd}: CPU µs/notification 0 rules {per['0']:.0f}, 100 rules {per['100']:.0f}, "
                  f"ratio {per['ratio']:.3f}", flush=True)
        for _, _, ws in users.values():
            ws.close()
    finally:
        node.stop()
    return {"rounds": rounds,
            "median_us_0": statistics.median(r["0"] for r in rounds),
            "median_us_100": statistics.median(r["100"] for r in rounds),
            "ratio": round(statistics.median(r["ratio"] for r in rounds), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--posts", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--worst", action="store_true")
    args = p.parse_args(argv)
    decide = micro(args.worst)
    print(f"in-process RuleSet.decide: {decide['decide_us_0_rules']} µs with 0 rules, "
          f"{decide['decide_us_100_rules']} µs with 100", flush=True)
    result = asyncio.run(run(args))
    result.update(decide=decide, args=vars(args), load_average=os.getloadavg())
    print(f"ingest CPU per notification: 0 rules {result['median_us_0']:.0f} µs, 100 rules "
          f"{result['median_us_100']:.0f} µs; ratio (median of rounds) {result['ratio']:.3f} (target <= 1.10)")
    print(f"results: {write_results('rules-cost', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
