#!/usr/bin/env python3
"""What Prometheus metrics cost at saturation: the same node with --metrics on and off.

    python bench/metrics_cost.py                 # 5 interleaved runs of 8 s each
    python bench/metrics_cost.py --runs 1 --duration 2 --users 10   # a smoke run

Two single-node NotiSync servers (one with ``--metrics off``) each get their
own load-generator process and the compare.py saturation scenario (phones
posting over their sockets, closed loop) and the REST saturation scenario,
interleaved run by run so a noisy neighbour hits both alike. Reported per
scenario: median deliveries/s and median server CPU µs per delivery (the
steadier figure on a shared machine), and the relative cost of metrics.
Writes bench/results/metrics-cost-<time>.json.
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

from bench.common import add_load_arguments, write_results  # noqa: E402
from bench.driver import started  # noqa: E402
from bench.targets import NotiSync  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_arguments(p, users=200, runs=5, duration=8.0, drain=30.0)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--rest-concurrency", type=int, default=32)
    p.add_argument("--micro", action="store_true",
                   help="only time each metrics hook in-process (steady on a noisy machine)")
    return p.parse_args(argv)


def micro(count: int = 200_000) -> dict[str, float]:
    """µs per call of each hook with metrics enabled, and per live delivery on the socket path.

    A live delivery to one socket costs ``live_write`` plus its share of a
    flush's ``frames_written``; each notification adds ``ingested`` and
    ``bus_out`` once, shared by its recipients (4 in the saturation scenario).
    """
    import asyncio
    import timeit

    from notisync.delivery.hub import Hub
    from notisync.runtime import metrics

    async def run() -> dict[str, float]:
        metrics.enable(Hub(), "bench")
        h = metrics.hooks
        calls = {
            "frames_written": lambda: h.frames_written(1),
            "ingested": lambda: h.ingested("stored"),
            "bus_out": lambda: h.bus_out(1),
            "replay": h.replay,
            "http_request": lambda: h.http_request("/api/v1/notifications", "POST", 201, 0.002),
        }
        out = {name: timeit.timeit(fn, number=count) / count * 1e6 for name, fn in calls.items()}
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(count):
            h.live_write("1795984808891-0")
        await asyncio.sleep(0)  # the deferred observation runs here
        out["live_write"] = (loop.time() - start) / count * 1e6
        out["per_delivery_4_recipients"] = (out["live_write"] + out["frames_written"]
                                            + (out["ingested"] + out["bus_out"]) / 4)
        return {k: round(v, 2) for k, v in out.items()}

    return asyncio.run(run())


def make_targets() -> dict[str, NotiSync]:
    on, off = NotiSync(), NotiSync()
    on.name, off.name = "metrics-on", "metrics-off"
    off.nodes[0].extra_args += ["--metrics", "off"]
    return {"metrics-on": on, "metrics-off": off}


def figures(result: dict[str, Any]) -> dict[str, float]:
    server = result["resources"]["server"] or {}
    received = max(result["received"], 1)
    return {"deliveries_per_s": result["deliveries_per_s"],
            "cpu_us_per_delivery": round(server.get("cpu_s", 0.0) * 1e6 / received, 1),
            "missing": result.get("missing", 0)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.micro:
        for name, us in micro().items():
            print(f"{name:28} {us:6.2f} µs")
        return 0
    targets = make_targets()
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"saturation": [], "rest_saturation": []} for name in targets}
    with started(list(targets.values()), args.users, args.devices) as gens:
        for gen in gens.values():
            gen.call("connect", timeout=300)
            gen.measured("warmup", timeout=args.drain + 60, drain=args.drain)
        budget = args.duration + args.drain + 120
        names = list(targets)
        for run in range(args.runs):
            order = names if run % 2 == 0 else names[::-1]
            for name in order:
                res = gens[name].measured("saturate", budget, duration=args.duration, window=args.window,
                                          drain=args.drain, tag=f"S{run}")
                runs[name]["saturation"].append(figures(res))
                print(f"run {run} {name:12} saturation {figures(res)}", flush=True)
            for name in order:
                res = gens[name].measured("rest_saturate", budget, duration=args.duration,
                                          concurrency=args.rest_concurrency, drain=args.drain, tag=f"R{run}")
                runs[name]["rest_saturation"].append(figures(res))
                print(f"run {run} {name:12} rest       {figures(res)}", flush=True)
    summary = summarize(runs)
    path = write_results("metrics-cost", {"args": vars(args), "runs": runs, "summary": summary})
    for scenario, s in summary.items():
        print(f"{scenario}: deliveries/s on {s['on_per_s']:,.0f} vs off {s['off_per_s']:,.0f} "
              f"({s['throughput_cost_pct']:+.1f} % cost); CPU µs/delivery on {s['on_us']} vs off {s['off_us']} "
              f"({s['cpu_cost_pct']:+.1f} %); paired within runs: throughput {s['paired_throughput_cost_pct']:+.1f} %, "
              f"CPU {s['paired_cpu_cost_pct']:+.1f} %")
    print(f"results: {path}")
    missing = sum(r["missing"] for t in runs.values() for rs in t.values() for r in rs)
    return 1 if missing else 0


def summarize(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, dict[str, float]]:
    out = {}
    for scenario in ("saturation", "rest_saturation"):
        on = runs["metrics-on"][scenario]
        off = runs["metrics-off"][scenario]
        on_rate = statistics.median(r["deliveries_per_s"] for r in on)
        off_rate = statistics.median(r["deliveries_per_s"] for r in off)
        on_us = statistics.median(r["cpu_us_per_delivery"] for r in on)
        off_us = statistics.median(r["cpu_us_per_delivery"] for r in off)
        # Each run measures on and off back to back: the ratio within a run
        # cancels most of a noisy neighbour's drift between runs.
        paired_rate = statistics.median(a["deliveries_per_s"] / b["deliveries_per_s"] for a, b in zip(on, off))
        paired_us = statistics.median(a["cpu_us_per_delivery"] / b["cpu_us_per_delivery"] for a, b in zip(on, off))
        out[scenario] = {
            "on_per_s": on_rate, "off_per_s": off_rate,
            "throughput_cost_pct": round((off_rate - on_rate) / off_rate * 100, 1) if off_rate else 0.0,
            "on_us": on_us, "off_us": off_us,
            "cpu_cost_pct": round((on_us - off_us) / off_us * 100, 1) if off_us else 0.0,
            "paired_throughput_cost_pct": round((1 - paired_rate) * 100, 1),
            "paired_cpu_cost_pct": round((paired_us - 1) * 100, 1),
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
