#!/usr/bin/env python3
"""``--workers 2`` against one process, at saturation, in the same run.

    python bench/workers.py            # 100 users x 5 devices, 3 interleaved runs of 8 s
    python bench/workers.py --quick    # 20 users, 1 run, 3 s

Both targets are ``python run.py`` with its embedded SQLite and redis: one
plain, one with ``--workers 2`` (two node processes behind the one port).
Each gets the workload of bench/compare.py's saturation scenario from its
own load-generator process (phones post over their sockets, each keeping
--window notifications unanswered; the other devices receive). Runs
alternate between the targets so a noisy neighbour hits both alike. Every
line shows the CPU of the server processes, of their redis, of the load
generator and of the whole machine: on 2 cores the generator competes with
the workers for the same CPUs, and the figures say how much.

Results: bench/results/workers-<time>.json. Exit code 1 if any delivery went missing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import add_load_arguments, environment, parse_with_quick, stat_fields, write_results  # noqa: E402
from bench.driver import started  # noqa: E402
from bench.targets import NotiSync  # noqa: E402


class Workers(NotiSync):
    """One ``python run.py --workers N``: the parent and its workers are all sampled as the server."""

    def __init__(self, workers: int) -> None:
        super().__init__(nodes=1, flags=[*NotiSync.FLAGS, "--workers", str(workers)])
        self.name = f"notisync-{workers}-workers"

    def pids(self) -> dict[str, list[int]]:
        out = super().pids()
        out["server"] = [pid for parent in out["server"] for pid in (parent, *_children(parent))]
        return out


def _children(pid: int) -> list[int]:
    """The worker processes: children of pid, not counting its embedded redis-server."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    name = f.read()
                parent = int(stat_fields(int(entry))[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid and "redis" not in name:
                kids.append(int(entry))
    return kids


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_arguments(p, users=100, runs=3, duration=8.0, drain=30.0)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    return parse_with_quick(p, argv, users=20, runs=1, duration=3.0)


def line(r: dict[str, Any]) -> str:
    res = r.get("resources") or {}
    cpu = {k: (res.get(k) or {}).get("cpu_pct", "-") for k in ("server", "redis", "generator")}
    return (f"{r['target']:>20} run {r['run']}: {r['deliveries_per_s']:>8.0f} deliv/s, missing {r['missing']}, "
            f"CPU server {cpu['server']}% redis {cpu['redis']}% generator {cpu['generator']}%, "
            f"machine busy {r['machine']['busy_pct']}% (others {r['machine']['others_pct']}%, of which steal "
            f"{r['machine'].get('steal_pct', '-')}%)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = [NotiSync(nodes=1), Workers(args.workers)]
    data: dict[str, Any] = {"config": vars(args), "environment": environment(), "results": [], "stops": {}}
    with started(targets, args.users, args.devices, stops=data["stops"]) as gens:
        for t in targets:
            conn = gens[t.name].call("connect", timeout=300)
            gens[t.name].call("warmup", timeout=args.drain + 60, drain=args.drain)
            print(f"{t.name}: {conn['sockets']} sockets up", flush=True)
        budget = args.duration + args.drain + 120
        for run in range(args.runs):
            order = targets if run % 2 == 0 else targets[::-1]
            for t in order:
                r = gens[t.name].measured("saturate", budget, duration=args.duration, window=args.window,
                                          drain=args.drain, tag=f"W{run}")
                r.update(target=t.name, run=run)
                data["results"].append(r)
                print(line(r), flush=True)
    print()
    for t in targets:
        rates = [r["deliveries_per_s"] for r in data["results"] if r["target"] == t.name]
        if rates:
            print(f"{t.name:>20}: median {statistics.median(rates):.0f} deliv/s over {len(rates)} run(s) "
                  f"(min {min(rates):.0f}, max {max(rates):.0f}); exit codes {data['stops'][t.name]['exit_codes']}")
    path = write_results("workers", data)
    print(f"results: {os.path.relpath(path, os.getcwd())}; load average {os.getloadavg()}")
    missing = sum(r["missing"] for r in data["results"])
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
