#!/usr/bin/env python3
"""NotiSync side by side with python-socketio + Redis, bare Tornado and bare asyncio, in one run.

    python bench/compare.py              # the full run (about 15 minutes on 2 cores)
    python bench/compare.py --quick      # a smoke run: small, one repetition

Every target gets the same workload from its own load-generator process:
U users x D devices, device 0 of each user a phone that posts over its
socket, the other D-1 receiving. Scenarios, interleaved across targets and
repeated --runs times so a noisy neighbour hits every target alike:

- saturation: each phone keeps --window notifications unanswered (closed loop);
- latency at each --rate: open-loop schedule, POST-to-delivery percentiles;
- (NotiSync) REST saturation: phones post over HTTP instead;
- (NotiSync) two nodes sharing redis, devices of each user split across them.

Then, once per target: capacity (--capacity sockets on a fresh server, RSS per
socket and connect rate) and, for NotiSync, catch-up (a device offline while
--catchup notifications queue; connect to last delivery).

`--case independent` runs instead the case of the independent benchmark in
issue 10 (bench/independent.py): NotiSync with default flags, a stdlib
asyncio generator, frames without client ids, 5 s windows right after
connecting, CPU sampled over each window.

Results: bench/results/compare-<time>.json and .md. Exit code 0 when every
delivery was accounted for, 1 if anything went missing or errored.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import independent, summary  # noqa: E402
from bench.common import environment, parse_with_quick, results_path  # noqa: E402
from bench.driver import Generator, started  # noqa: E402
from bench.targets import NotiSync, Target, all_targets  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--devices", type=int, default=5, help="per user: one phone and D-1 receivers")
    p.add_argument("--runs", type=int, default=3, help="interleaved repetitions (medians reported)")
    p.add_argument("--case", choices=("compare", "independent"), default="compare",
                   help="compare.py's own scenarios, or the independent harness's case (issue 10)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds per saturation/latency scenario (default 8; 5 with --case independent)")
    p.add_argument("--drain", type=float, default=30.0, help="seconds allowed for the last deliveries")
    p.add_argument("--window", type=int, default=4, help="unanswered notifications per phone at saturation")
    p.add_argument("--rate", type=float, action="append", help="notifications/s for latency (default 100, 500)")
    p.add_argument("--rest-concurrency", type=int, default=32)
    p.add_argument("--capacity", type=int, default=10_000, help="sockets for the capacity scenario (0: skip)")
    p.add_argument("--capacity-devices", type=int, default=10,
                   help="devices per user in the capacity scenario (each connect notifies the others)")
    p.add_argument("--catchup", type=int, default=1000, help="queued notifications for catch-up (0: skip)")
    p.add_argument("--only", default="", help="comma-separated targets: notisync,socketio,tornado,asyncio")
    p.add_argument("--uvloop", action="store_true", help="run every server (ours and the peers) on uvloop")
    p.add_argument("--no-cluster", action="store_true", help="skip the two-node NotiSync target")
    p.add_argument("--capacity-only", action="store_true", help="run only the capacity scenario")
    independent.add_arguments(p)
    args = parse_with_quick(p, argv, "20 users, 1 run, 3 s, 1,000 sockets: a smoke run",
                            users=20, runs=1, duration=3.0, capacity=1000, catchup=200)
    if args.duration is None:
        args.duration = 5.0 if args.case == "independent" else 8.0
    if args.case == "independent":
        args.rate = args.rate or [500.0]
    args.rate = args.rate or ([100.0] if args.quick else [100.0, 500.0])
    return args


def pick_targets(args: argparse.Namespace) -> list[Target]:
    targets = all_targets(args.uvloop)
    names = [n for n in args.only.split(",") if n] or list(targets)
    unknown = set(names) - set(targets)
    if unknown:
        raise SystemExit(f"unknown targets: {', '.join(sorted(unknown))}")
    chosen = [targets[n] for n in names]
    if "notisync" in names and not args.no_cluster:
        chosen.insert(1, NotiSync(nodes=2, uvloop=args.uvloop))
    return chosen


# -- the interleaved runs ----------------------------------------------------------------
def interleaved(args: argparse.Namespace, targets: list[Target], data: dict[str, Any]) -> None:
    with started(targets, args.users, args.devices, stops=data["stops"]) as gens:
        for t in targets:
            gen = gens[t.name]
            conn = gen.call("connect", timeout=300)
            warm = gen.measured("warmup", timeout=args.drain + 60, drain=args.drain)
            data["setup"][t.name] = {"prepare": gen.prepared, "connect": conn}
            record(data, t.name, "warmup", warm)
            log(f"{t.name}: {conn['sockets']} sockets up (server counts {conn['server_connections']}), "
                f"warm-up {warm['received']}/{warm['expected']} delivered")
        budget = args.duration + args.drain + 120
        for run in range(args.runs):
            order = targets[run % len(targets):] + targets[:run % len(targets)]
            for t in order:
                res = gens[t.name].measured("saturate", budget, duration=args.duration, window=args.window,
                                            drain=args.drain, tag=f"S{run}")
                record(data, t.name, "saturation", res, run)
            for i, rate in enumerate(args.rate):
                for t in order:
                    res = gens[t.name].measured("latency", budget, rate=rate, duration=args.duration,
                                                drain=args.drain, tag=f"L{i}r{run}")
                    record(data, t.name, f"latency@{rate:g}", res, run)
            if "notisync" in gens:
                res = gens["notisync"].measured("rest_saturate", budget, duration=args.duration,
                                                concurrency=args.rest_concurrency, drain=args.drain, tag=f"R{run}")
                record(data, "notisync", "rest_saturation", res, run)
        if "notisync" in gens and args.catchup:
            for k in range(args.runs):
                res = gens["notisync"].measured("catchup", 300, count=args.catchup, window=50,
                                                drain=args.drain, tag=f"C{k}")
                record(data, "notisync", "catchup", res, k)


def capacity(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """Fresh server per target; RSS before and after connecting --capacity idle sockets."""
    per_user = max(2, args.capacity_devices)
    users = max(1, args.capacity // per_user)
    for name, t in all_targets(args.uvloop).items():
        if args.only and name not in args.only.split(","):
            continue
        gen = None
        try:
            t.start()
            gen = Generator(t, users, per_user)
            gen.call("prepare", timeout=600)
            res = gen.measured("connect", timeout=600)
            record(data, name, "capacity", res)
        except RuntimeError as exc:
            data["capacity_errors"][name] = str(exc)
            log(f"capacity {name}: {exc}")
        finally:
            if gen is not None:
                gen.stop()
            data["stops"][f"{name} (capacity)"] = t.stop()


def record(data: dict[str, Any], target: str, scenario: str, result: dict[str, Any], run: int = 0) -> None:
    result.update(target=target, scenario=scenario, run=run)
    data["results"].append(result)
    log(summary.one_line(result))


def log(line: str) -> None:
    print(line, flush=True)


def write(data: dict[str, Any], markdown: str) -> str:
    stem = results_path("compare", "")
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(markdown)
    return stem


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    data: dict[str, Any] = {"config": vars(args), "environment": environment(), "setup": {}, "results": [],
                            "stops": {}, "capacity_errors": {}}
    targets = pick_targets(args) if args.case == "compare" else []
    code = 0
    try:
        if args.case == "independent":
            independent.run(args, data, log)
        elif not args.capacity_only:
            interleaved(args, targets, data)
        if args.capacity and args.case == "compare":
            capacity(args, data)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        data["error"] = str(exc)
        code = 2
    markdown = independent.markdown(data) if args.case == "independent" else summary.markdown(data)
    data["problems"] = problems = summary.problems(data)
    stem = write(data, markdown)
    print("\n" + markdown)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print(f"results: {os.path.relpath(stem, os.getcwd())}.json / .md")
    return code or (1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
