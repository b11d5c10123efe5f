"""Tables, warnings and the pass/fail verdict for bench/latency.py results."""
from __future__ import annotations

import os
import sys
from typing import Any

GENERATOR_BOUND_PCT = 90.0  # of one core: above this the generator, not the server, is the bottleneck


def _row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def _table(header: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(_row(header, widths))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(_row(row, widths))


def _name(s: dict[str, Any]) -> str:
    return f"latency@{s['rate']:g}/s" if s["scenario"] == "latency" else "saturation"


def _ms(summary: dict[str, Any], key: str) -> str:
    return f"{summary[key]:.1f}" if summary.get("n") else "-"


def _pct(res: dict[str, Any] | None) -> str:
    return f"{res['cpu_pct']:.0f}%" if res else "-"


def _rss(res: dict[str, Any] | None) -> str:
    return f"{res['rss_mb_before']:.0f}->{res['rss_mb_after']:.0f}" if res else "-"


def _other(s: dict[str, Any]) -> str:
    others = (s.get("machine") or {}).get("others_pct")
    return f"{others:.0f}%" if others is not None else "-"


def print_tables(data: dict[str, Any]) -> None:
    scenarios = data.get("scenarios", [])
    print("\ndeliveries (latency = receive time - send time in the body, ms)")
    _table(
        ["scenario", "via", "sent", "expected", "received", "missing", "p50", "p99", "p99.9", "max",
         "deliv/s"],
        [[_name(s), s["via"], s["sent"], s["expected"], s["received"], s["missing"],
          _ms(s["latency_ms"], "p50"), _ms(s["latency_ms"], "p99"), _ms(s["latency_ms"], "p99_9"),
          _ms(s["latency_ms"], "max"), s["deliveries_per_s"]] for s in scenarios],
    )
    print("\nresources (CPU% of one core over the scenario; RSS MB before->after; other = rest of the machine)"
          " and client-side timings (ms)")
    _table(
        ["scenario", "server CPU", "server RSS", "redis CPU", "redis RSS", "gen CPU", "other CPU",
         "accept p50", "accept p99", "sched lag p99"],
        [[_name(s), _pct(s["resources"]["server"]), _rss(s["resources"]["server"]),
          _pct(s["resources"]["redis"]), _rss(s["resources"]["redis"]), _pct(s["resources"]["generator"]),
          _other(s), _ms(s["accept_ms"], "p50"), _ms(s["accept_ms"], "p99"),
          _ms(s.get("schedule_lag_ms", {}), "p99")] for s in scenarios],
    )
    for s in scenarios:
        if s["scenario"] == "saturation":
            _print_saturation(s)
    _print_warnings(data)


def _print_saturation(s: dict[str, Any]) -> None:
    per_s = s.get("per_second") or {}
    print(f"\nsaturation: {s['sent_per_s']} notifications/s accepted, {s['deliveries_per_s']} deliveries/s "
          f"sustained; whole seconds min/median/max {per_s.get('min')}/{per_s.get('median')}/{per_s.get('max')}; "
          f"all delivered within the drain timeout: {'yes' if s['drained'] and not s['missing'] else 'NO'}")


def _print_warnings(data: dict[str, Any]) -> None:
    sys.stdout.flush()  # keep the warnings below the tables when both streams go to one terminal or file
    for warning in warnings(data):
        print(f"\n!!! WARNING: {warning}", file=sys.stderr)
    if data.get("server_stop", {}).get("left_redis_running"):
        print("\n!!! WARNING: the node exited but left its embedded redis-server running (SPEC: SIGTERM "
              "stops it). The bench stopped it.", file=sys.stderr)
    log = data.get("server_log", {})
    if log.get("count"):
        print(f"\nserver log: {log['count']} WARNING/ERROR lines, first ones:")
        for line in log["first"]:
            print(f"  {line[:200]}")


def warnings(data: dict[str, Any]) -> list[str]:
    out = []
    cpus = os.cpu_count() or 1
    for s in data.get("scenarios", []):
        res = s["resources"]
        gen = res.get("generator") or {}
        if gen.get("cpu_pct", 0) > GENERATOR_BOUND_PCT:
            out.append(f"{_name(s)}: generator used {gen['cpu_pct']:.0f}% of a core. This run is "
                       "generator-bound: it measures the generator, not the server.")
        busy = (s.get("machine") or {}).get("busy_pct") or 0
        if busy > 90 * cpus:
            others = s["machine"]["others_pct"]
            out.append(f"{_name(s)}: the machine was {busy / cpus:.0f}% busy across {cpus} cores "
                       f"({others:.0f}% of a core outside this benchmark). Processes are competing for CPU, "
                       "so these numbers understate the server.")
        cap = s.get("client_cap_per_s")
        if cap and s["sent_per_s"] >= 0.9 * cap:
            out.append(f"saturation reached the client's pacing cap ({cap:g}/s = users x per-socket limit); "
                       "the server was not saturated: use more --users")
    return out


def verdict(data: dict[str, Any]) -> list[str]:
    """Everything that makes this run a failure. An empty list means pass."""
    problems = []
    for s in [data["warmup"], *data.get("scenarios", [])]:
        name = _name(s) if "scenario" in s else "warmup"
        checks = [
            (s["missing"], "deliveries missing"), (s["unexpected"], "deliveries of unacknowledged notifications"),
            (sum(s["errors"].values()), f"send errors {s['errors']}"), (s["unanswered"], "sends never answered"),
            (s["overflow"], "sends dropped: generator had too many requests in flight"),
            (s["echoes"], "notifications echoed back to the phone that sent them"),
            (s["closed_sockets"], "sockets closed by the server"),
        ]
        problems += [f"{name}: {n} {what}" for n, what in checks if n]
        if not s["drained"]:
            problems.append(f"{name}: not everything arrived within the drain timeout")
        if not s["sent"]:
            problems.append(f"{name}: nothing was sent")
    exit_code = data.get("server_stop", {}).get("exit_code")
    if exit_code not in (0, None):
        problems.append(f"server exited with {exit_code} on SIGTERM (SPEC: exit 0)")
    log = data.get("server_log", {})
    if log.get("errors"):
        problems.append(f"server logged {log['errors']} ERROR/Traceback lines, e.g. {log['first_errors'][0][:160]}")
    return problems
