#!/usr/bin/env python3
"""Old tree against new tree, side by side in the SAME windows: CPU per notification.

    python bench/ab.py --old /tmp/main-checkout [--new .] [--rate 500] [--runs 5]
    python bench/ab.py --old . --new-args "--post-rate 0"   # what one flag costs

On a machine shared with other work, runs made one after another differ
by more than most changes we want to see. Here both trees run at once
(each `python run.py` with default flags, its own embedded redis and its
own load generator: the case of `bench/compare.py --case independent`),
and every window drives both at the same rate at the same time, so a
neighbour's burst hits both alike.

The figure is server + redis CPU from a window's first send to its last
delivery, divided by the notifications sent: all the work those
notifications cost, even when a starved server finished them after the
window. Printed per run and as medians with the ratio new/old; no
thresholds (timings are never asserted).
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import threading
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import summary  # noqa: E402
from bench.common import add_load_arguments  # noqa: E402
from bench.driver import Generator, started  # noqa: E402
from bench.targets import NotiSync  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, help="checkout of the baseline (e.g. a worktree of main)")
    p.add_argument("--new", default=ROOT, help="checkout under test (default: this one)")
    add_load_arguments(p, users=200, runs=5, duration=5.0, drain=60.0)
    p.add_argument("--rate", type=float, default=500.0, help="notifications/s per tree")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--saturation", action="store_true", help="also a closed-loop saturation window per run")
    p.add_argument("--notisync-args", default="", help="flags for both nodes (default: none, as shipped)")
    p.add_argument("--old-args", default="", help="flags for the old node only (after --notisync-args)")
    p.add_argument("--new-args", default="", help="flags for the new node only: with --old . it measures a flag")
    return p.parse_args(argv)


def per_notification_us(r: dict[str, Any]) -> float:
    res = r["drained_resources"]
    cpu = res["server"]["cpu_s"] + ((res.get("redis") or {}).get("cpu_s") or 0.0)
    return cpu / max(r["sent"], 1) * 1e6


def both(gens: dict[str, Generator], targets: dict[str, NotiSync], budget: float, **kw: Any) -> dict[str, Any]:
    """The same window on every tree at once (one thread per generator)."""
    out: dict[str, Any] = {}

    def one(name: str) -> None:
        try:
            out[name] = gens[name].call("window", budget, pids=targets[name].pids(), **kw)
        except Exception as exc:  # reported, and the run goes on
            out[name] = {"error": repr(exc)}

    threads = [threading.Thread(target=one, args=(n,)) for n in gens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flags = shlex.split(args.notisync_args)
    targets = {"old": NotiSync(flags=flags + shlex.split(args.old_args), root=args.old),
               "new": NotiSync(flags=flags + shlex.split(args.new_args), root=args.new)}
    for name, target in targets.items():
        target.name = name  # both are "notisync": started() keys its generators by name
    figures: dict[str, dict[str, list[float]]] = {n: {} for n in targets}
    sides = " ".join(f"{n}={os.path.abspath(root)}" + (f" [{extra}]" if extra else "")
                     for n, root, extra in (("old", args.old, args.old_args), ("new", args.new, args.new_args)))
    print(f"{sides} rate={args.rate:g}/s "
          f"{args.users}x{args.devices} load={os.getloadavg()}", flush=True)
    with started(list(targets.values()), args.users, args.devices,
                 loop="asyncio", frame_ids=False, resume=False) as gens:
        try:
            missing = measure(args, gens, targets, figures)
        finally:
            print_log_problems(targets)
    print("medians:")
    for key in sorted({k for f in figures.values() for k in f}):
        old, new = (statistics.median(figures[n][key]) if figures[n].get(key) else None for n in ("old", "new"))
        ratio = f"{new / old:.3f}" if old and new else "-"
        print(f"  {key:22s} old {old!s:>10.10} new {new!s:>10.10} new/old {ratio}")
    print(f"missing deliveries: {missing}")
    return 1 if missing else 0


def measure(args: argparse.Namespace, gens: dict[str, Generator], targets: dict[str, NotiSync],
            figures: dict[str, dict[str, list[float]]]) -> int:
    """Every run's windows on both trees at once, a line each; the figures per tree. Returns the missing."""
    missing = 0
    budget = args.duration + args.drain + 300
    for run in range(args.runs):
        kinds = [("latency", {"rate": args.rate})] + ([("saturate", {"window": 4})] if args.saturation else [])
        for kind, extra in kinds:
            res = both(gens, targets, budget, kind=kind, settle=args.settle, duration=args.duration,
                       drain=args.drain, tag=f"AB{kind[0]}{run}", **extra)
            steal = max(map(summary.steal, res.values()))
            line = [f"run {run} {kind:8s} load {os.getloadavg()[0]:.2f} steal {steal:.1f}%"]
            for name in targets:
                r = res[name]
                if "error" in r:
                    line.append(f"{name}: ERROR {r['error']}")
                    continue
                missing += r["missing"]
                us = per_notification_us(r)
                figures[name].setdefault(kind, []).append(us)
                if kind == "saturate":
                    figures[name].setdefault("sat_deliveries_per_s", []).append(r["deliveries_per_s"])
                figures[name].setdefault(f"{kind}_p99", []).append(r["latency_ms"]["p99"])
                refused = r.get("errors") or {}  # error frames the phones got (e.g. rate_limited)
                line.append(f"{name}: {us:6.0f} us/notification, sent {r['sent']}, "
                            f"{r['deliveries_per_s']:.0f} deliv/s, p99 {r['latency_ms']['p99']:.1f} ms, "
                            f"missing {r['missing']}" + (f", refused {refused}" if refused else ""))
            print(" | ".join(line), flush=True)
    return missing


def print_log_problems(targets: dict[str, NotiSync]) -> None:
    # A missing delivery is explained here or not at all (e.g. sockets
    # whose auth timed out in a connect burst on a starved machine).
    for name, target in targets.items():
        for node in target.nodes:
            problems = node.log_problems(limit=5)
            print(f"{name} log: {problems['count']} warning/error line(s), {problems['errors']} error(s)")
            for line in problems["first"]:
                print(f"  {line[:200]}")


if __name__ == "__main__":
    sys.exit(main())
