"""Medians, ratios, the Markdown table, warnings and the pass/fail verdict for bench/compare.py."""
from __future__ import annotations

import statistics
from typing import Any, Callable

GENERATOR_BOUND_PCT = 90.0  # of one core: above this the generator, not the server, is the bottleneck
# Of one core, over a window: above this the hypervisor ran another guest on
# this VM's cores long enough to show (bench/common.py machine_usage).
STEAL_WARN_PCT = 3.0
OURS, CLUSTER = "notisync", "notisync-2-nodes"
PEERS = ("socketio", "tornado", "asyncio")
LABELS = {OURS: "NotiSync (1 node)", CLUSTER: "NotiSync (2 nodes)", "socketio": "python-socketio + Redis",
          "tornado": "bare Tornado", "asyncio": "bare asyncio"}


def one_line(r: dict[str, Any]) -> str:
    head = f"{r['target']:>18} {r['scenario']:<16} run {r['run']}:"
    if r["scenario"] == "capacity":
        return f"{head} {r['sockets']} sockets at {r['per_s']}/s, server counts {r['server_connections']}"
    if r["scenario"] == "catchup":
        return (f"{head} {r['delivered']}/{r['queued']} in {r['connect_to_last_ms']} ms, "
                f"in order: {r['in_order']}")
    lat = r.get("latency_ms", {})
    server = (r.get("resources") or {}).get("server") or {}
    gen = (r.get("resources") or {}).get("generator") or {}
    return (f"{head} {r['deliveries_per_s']:>9.0f} deliv/s, p50 {lat.get('p50', '-')} p99 {lat.get('p99', '-')} ms, "
            f"missing {r['missing']}, errors {sum(r['errors'].values())}, server CPU {server.get('cpu_pct', '-')}%, "
            f"gen CPU {gen.get('cpu_pct', '-')}%")


# -- aggregation ---------------------------------------------------------------------------
def runs(data: dict[str, Any], target: str, scenario: str) -> list[dict[str, Any]]:
    return [r for r in data["results"] if r["target"] == target and r["scenario"] == scenario]


def spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def stat(data: dict[str, Any], target: str, scenario: str, get: Callable[[dict[str, Any]], Any]) -> dict | None:
    out = []
    for r in runs(data, target, scenario):
        try:
            out.append(get(r))
        except (KeyError, TypeError):
            pass
    return spread(out)


def _res(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r["resources"][name][key]


def cpu_per_delivery_us(r: dict[str, Any]) -> float:
    """Server + redis CPU seconds per delivery, in microseconds: the cost of one message to one device."""
    res = r["resources"]
    cpu = res["server"]["cpu_s"] + ((res.get("redis") or {}).get("cpu_s") or 0.0)
    return cpu / max(r["received"], 1) * 1e6


def fmt(s: dict | None, digits: int = 0) -> str:
    if not s:
        return "–"
    f = f"{{:,.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["median"])
    return f"{f.format(s['median'])} ({f.format(s['min'])}–{f.format(s['max'])})"


def ratio(data: dict[str, Any], a: str, b: str, scenario: str = "saturation") -> float | None:
    sa = stat(data, a, scenario, lambda r: r["deliveries_per_s"])
    sb = stat(data, b, scenario, lambda r: r["deliveries_per_s"])
    return sa["median"] / sb["median"] if sa and sb and sb["median"] else None


def targets_in(data: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for r in data["results"]:
        if r["target"] not in seen:
            seen.append(r["target"])
    return seen


# -- markdown ------------------------------------------------------------------------------
def markdown(data: dict[str, Any]) -> str:
    env, cfg = data["environment"], data["config"]
    out = [f"### bench/compare.py — {env['started'][:10]}, commit {env['commit']}{' (dirty)' if env['dirty'] else ''}",
           "", f"{env['cpus']} cores ({env.get('cpu_model', 'unknown CPU')}), Python {env['python']}, loopback; {cfg['users']} users × {cfg['devices']} "
           f"devices ({cfg['devices'] - 1} recipients per notification); {cfg['runs']} interleaved runs of "
           f"{cfg['duration']:g} s, median (min–max).", ""]
    out += _main_table(data, cfg)
    out += _ratios(data)
    out += _capacity_table(data)
    out += _catchup(data)
    out += _targets(data)
    out += [f"- WARNING: {w}" for w in warnings(data)]
    return "\n".join(out) + "\n"


def _main_table(data: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    rates = [f"latency@{r:g}" for r in cfg["rate"]]
    head = ["server", "saturation deliveries/s", "server CPU %", "redis CPU %", "CPU µs/delivery", "server RSS MB",
            "gen CPU %"]
    head += [f"{name[8:]}/s p50 / p99 / p99.9 ms" for name in rates] + ["missing"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in targets_in(data):
        sat = lambda f: stat(data, t, "saturation", f)  # noqa: E731
        cells = [LABELS.get(t, t), fmt(sat(lambda r: r["deliveries_per_s"])), fmt(sat(_res("server", "cpu_pct"))),
                 fmt(sat(_res("redis", "cpu_pct"))), fmt(sat(cpu_per_delivery_us), 1),
                 fmt(sat(_res("server", "rss_mb_after"))), fmt(sat(_res("generator", "cpu_pct")))]
        for name in rates:
            q = [fmt(stat(data, t, name, lambda r, k=k: r["latency_ms"][k]), 1) for k in ("p50", "p99", "p99_9")]
            cells.append(" / ".join(q))
        cells.append(str(sum(r.get("missing", 0) for r in data["results"] if r["target"] == t)))
        rows.append("| " + " | ".join(cells) + " |")
    rest = stat(data, OURS, "rest_saturation", lambda r: r["deliveries_per_s"])
    if rest:
        rows += ["", f"NotiSync with phones posting over REST instead: {fmt(rest)} deliveries/s."]
    return rows + [""]


def _ratios(data: dict[str, Any]) -> list[str]:
    lines = []
    for peer in PEERS:
        r = ratio(data, OURS, peer)
        if r is not None:
            lines.append(f"- saturation, NotiSync / {LABELS[peer]}: **{r:.2f}×**")
    one = stat(data, OURS, "saturation", cpu_per_delivery_us)
    two = stat(data, CLUSTER, "saturation", cpu_per_delivery_us)
    if one and two:
        lines.append(f"- two nodes: {two['median']:.1f} µs of CPU per delivery (both nodes + redis) against "
                     f"{one['median']:.1f} µs on one node ({two['median'] / one['median']:.2f}×)")
    return lines + [""] if lines else []


def _capacity_table(data: dict[str, Any]) -> list[str]:
    rows = []
    for t in targets_in(data):
        for r in runs(data, t, "capacity"):
            srv = r["resources"]["server"]
            counted = min(r["sockets"], r["server_connections"] or 0)
            kib = (srv["rss_mb_after"] - srv["rss_mb_before"]) * 1024 / max(counted, 1)
            r["rss_kib_per_socket"] = round(kib, 1)
            rows.append(f"| {LABELS.get(t, t)} | {r['sockets']:,} | {r['server_connections']:,} | {r['per_s']:,.0f} | "
                        f"{srv['rss_mb_before']:.0f} → {srv['rss_mb_after']:.0f} | {kib:.1f} |")
    if not rows:
        return []
    return ["| capacity | sockets | server counts | connects/s | server RSS MB | KiB/socket |",
            "|---|---|---|---|---|---|", *rows, ""]


def _catchup(data: dict[str, Any]) -> list[str]:
    rs = runs(data, OURS, "catchup")
    if not rs:
        return []
    ms = spread([r["connect_to_last_ms"] for r in rs])
    return [f"Catch-up: {rs[0]['queued']:,} queued notifications, connect to last delivered: {fmt(ms, 1)} ms; "
            f"in order: {all(r['in_order'] for r in rs)}; missing: {sum(r['missing'] for r in rs)}.", ""]


def _targets(data: dict[str, Any]) -> list[str]:
    """The issue's targets, each with the measured value: met, or missed and by how much."""
    lines = []

    def check(ok: bool | None, text: str) -> None:
        if ok is not None:
            lines.append(f"- {'met' if ok else 'MISSED'}: {text}")

    peer = ratio(data, OURS, "socketio")
    check(peer and peer >= 2.0, f"saturation ≥ 2× python-socketio + Redis — measured {peer or 0:.2f}×")
    ceiling = ratio(data, OURS, "asyncio")
    check(ceiling and ceiling >= 0.5, f"saturation ≥ 50 % of bare asyncio — measured {(ceiling or 0) * 100:.0f} %")
    p99 = stat(data, OURS, "latency@500", lambda r: r["latency_ms"]["p99"])
    missing = sum(r["missing"] for r in runs(data, OURS, "latency@500"))
    if p99:
        check(p99["median"] <= 20 and not missing,
              f"p99 ≤ 20 ms at 500 notifications/s — measured {p99['median']:.1f} ms, {missing} missing")
    for r in runs(data, OURS, "capacity"):
        check(r["server_connections"] >= 10_000 and r.get("rss_kib_per_socket", 99) <= 20,
              f"10,000 sockets at ≤ 20 KiB each — measured {r['server_connections']:,} at "
              f"{r.get('rss_kib_per_socket', 0):.1f} KiB")
    catch = spread([r["connect_to_last_ms"] for r in runs(data, OURS, "catchup") if r["queued"] >= 1000])
    if catch:
        check(catch["median"] <= 250, f"catch-up of 1,000 queued ≤ 250 ms — measured {catch['median']:.0f} ms")
    two = runs(data, CLUSTER, "saturation")
    if two:
        lost = sum(r["missing"] for r in data["results"] if r["target"] == CLUSTER)
        check(lost == 0, f"two nodes deliver everything — {lost} missing over {len(two)} runs")
    return ["Targets (single node unless stated):", "", *lines, ""] if lines else []


# -- warnings and verdict ------------------------------------------------------------------
def steal(r: dict[str, Any]) -> float:
    """A window's steal, % of a core (0 for results from before it was recorded)."""
    return (r.get("machine") or {}).get("steal_pct") or 0.0


def disturbed_window(r: dict[str, Any]) -> bool:
    return steal(r) > STEAL_WARN_PCT


def warnings(data: dict[str, Any]) -> list[str]:
    out = []
    cpus = data["environment"]["cpus"] or 1
    for r in data["results"]:
        gen = ((r.get("resources") or {}).get("generator") or {}).get("cpu_pct", 0)
        name = f"{r['target']} {r['scenario']} run {r['run']}"
        if gen > GENERATOR_BOUND_PCT and r["scenario"] != "capacity":
            out.append(f"{name}: the generator used {gen:.0f}% of a core; this run measures the generator, "
                       "not the server (the server's figure is a lower bound)")
        busy = (r.get("machine") or {}).get("busy_pct") or 0
        if disturbed_window(r) and r["scenario"] != "capacity":
            out.append(f"{name}: the host took {steal(r):.0f}% of a core from this machine (steal): its latency "
                       "and throughput are disturbed")
        if busy > 95 * cpus and r["scenario"] == "saturation":
            out.append(f"{name}: the machine was {busy / cpus:.0f}% busy across {cpus} cores: all processes "
                       "competed for CPU")
    return out


def problems(data: dict[str, Any]) -> list[str]:
    out = []
    for r in data["results"]:
        name = f"{r['target']} {r['scenario']} run {r['run']}"
        if r["scenario"] == "capacity":
            if (r.get("server_connections") or 0) < r["sockets"]:
                out.append(f"{name}: the server counts {r['server_connections']} of {r['sockets']} sockets")
            continue
        checks = [(r.get("missing"), "deliveries missing"), (r.get("unexpected"), "unexpected deliveries"),
                  (sum((r.get("errors") or {}).values()), f"send errors {r.get('errors')}"),
                  (r.get("unanswered"), "sends never answered"), (r.get("echoes"), "echoes to the sender"),
                  (r.get("closed_sockets"), "sockets closed by the server")]
        out += [f"{name}: {n} {what}" for n, what in checks if n]
        if r["scenario"] == "catchup" and not r["in_order"]:
            out.append(f"{name}: catch-up delivered out of order")
        if r.get("drained") is False:
            out.append(f"{name}: not everything arrived within the drain timeout")
    for name, stop in data["stops"].items():
        if any(code not in (0, None) for code in stop["exit_codes"]):
            out.append(f"{name}: exited with {stop['exit_codes']} on SIGTERM")
        if stop.get("log_errors"):
            out.append(f"{name}: logged errors, e.g. {stop['log_errors'][0][:160]}")
    out += [f"capacity {name}: {err}" for name, err in data["capacity_errors"].items()]
    return out
