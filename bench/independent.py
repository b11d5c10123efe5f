"""The independent harness's case, run by `bench/compare.py --case independent` (issue 10).

An independent benchmark on this machine measured NotiSync at 1.14x
python-socketio with a p99 of 39 ms at 500 notifications/s, where
compare.py's own scenarios said 1.75x and 8.7 ms. Its case, reproduced here
as closely as its description allows:

- 200 users x 5 devices (1,000 sockets), 4 recipients per notification;
- NotiSync as `python run.py` with default flags (so the per-socket rate
  limit of 50 frames/s, burst 200, and log level INFO), the peers as they are;
- the generator on the stdlib asyncio loop (compare.py's runs on uvloop);
- phones send `new_notification` frames without a client id, so nothing is
  acknowledged: a notification counts as sent when written, receivers match
  it by its title, latency is receive time minus the send time it carries,
  and the saturation loop is closed on delivery (each phone keeps --window
  notifications not yet seen by all its receivers);
- every 5 s window starts --settle (2) s after the 1,000 sockets connect:
  each window connects the fleet afresh and disconnects it afterwards;
- server and redis CPU sampled over the window itself;
- --runs interleaved runs, median [min-max].

Each difference from compare.py's own scenarios is a flag, so they can be
tried one at a time: --gen-loop uvloop, --frame-ids (loop closed on acks),
--settle 20, --notisync-args "--ws-rate-limit 0 --log-level WARNING". On a
shared machine, runs made one after another differ by more than most of
these effects, so --variant NAME="FLAGS" adds a NotiSync row with those
flags changed, interleaved with the others in the same runs:

    python bench/compare.py --case independent --only tornado --runs 2 \
        --variant base= --variant uvloop="--gen-loop uvloop" --variant ids=--frame-ids
"""
from __future__ import annotations

import argparse
import shlex
from typing import Any

from bench import summary
from bench.driver import Generator
from bench.summary import LABELS, fmt, spread, stat
from bench.targets import NotiSync, Target, all_targets

DEFAULT_TARGETS = "notisync,socketio,tornado"
# The targets for this case.
CPU_VS_TORNADO = 1.5
P99_MS = 20.0
SAT_VS_SOCKETIO = 2.0
SAT_VS_TORNADO = 0.75


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--case independent")
    g.add_argument("--gen-loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the generator's event loop (independent case; compare.py's own scenarios use uvloop)")
    g.add_argument("--frame-ids", action="store_true",
                   help="phones send client ids and the saturation loop closes on acks (as compare.py does)")
    g.add_argument("--settle", type=float, default=2.0, help="seconds between the sockets connecting and a window")
    g.add_argument("--notisync-args", default="",
                   help='NotiSync flags beyond port/data dir, e.g. "--ws-rate-limit 0" (default: none, as shipped)')
    g.add_argument("--tree", default=None, metavar="DIR",
                   help="run NotiSync from this checkout (e.g. a worktree of main) instead of this one: "
                        "with --variant, an old-against-new run in the same windows")
    g.add_argument("--variant", action="append", default=[], metavar='NAME="FLAGS"',
                   help="an extra NotiSync row, notisync[NAME], with these of the four flags above changed")


def _variant_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="--variant", add_help=False)
    add_arguments(p)
    return p


class Entry:
    """One row: a target and how the generator drives it."""

    def __init__(self, target: Target, opts: argparse.Namespace, name: str | None = None) -> None:
        self.target, self.settle = target, opts.settle
        self.options = {"loop": opts.gen_loop, "frame_ids": opts.frame_ids, "resume": False}
        self.config = {k: getattr(opts, k) for k in ("gen_loop", "frame_ids", "settle", "notisync_args", "tree")}
        if name:
            target.name = name
        self.name = target.name


def pick(args: argparse.Namespace) -> list[Entry]:
    peers = all_targets(args.uvloop)
    chosen: list[Entry] = []
    for name in [n for n in (args.only or DEFAULT_TARGETS).split(",") if n]:
        if name == "notisync":
            chosen.append(Entry(NotiSync(uvloop=args.uvloop, flags=shlex.split(args.notisync_args),
                                         root=args.tree), args))
        elif name in peers:
            chosen.append(Entry(peers[name], args))
        else:
            raise SystemExit(f"unknown target: {name}")
    for spec in args.variant:
        label, _, flags = spec.partition("=")
        opts = _variant_parser().parse_args(shlex.split(flags), namespace=argparse.Namespace(**vars(args)))
        target = NotiSync(uvloop=args.uvloop, flags=shlex.split(opts.notisync_args), root=opts.tree)
        chosen.append(Entry(target, opts, f"notisync[{label}]"))
    return chosen


def run(args: argparse.Namespace, data: dict[str, Any], log: Any) -> None:
    entries = pick(args)
    gens: dict[str, Generator] = {}
    data["case"] = "independent"
    try:
        for e in entries:
            e.target.start()
            gens[e.name] = gen = Generator(e.target, args.users, args.devices, **e.options)
            prep = gen.call("prepare", timeout=300 + args.users * 2)
            data["setup"][e.name] = {"prepare": prep, **e.config, **gen.call("loop", timeout=10)}
            log(f"{e.name}: {args.users} users ready; generator loop {data['setup'][e.name]['loop']}")
        budget = args.duration + args.drain + 300
        for run_no in range(args.runs):
            order = entries[run_no % len(entries):] + entries[:run_no % len(entries)]
            for e in order:
                res = gens[e.name].call("window", budget, kind="saturate", settle=e.settle,
                                        duration=args.duration, drain=args.drain, window=args.window,
                                        tag=f"IS{run_no}", pids=e.target.pids())
                record(data, e.name, "saturation", res, run_no, log)
            for i, rate in enumerate(args.rate):
                for e in order:
                    res = gens[e.name].call("window", budget, kind="latency", settle=e.settle, rate=rate,
                                            duration=args.duration, drain=args.drain, tag=f"IL{i}r{run_no}",
                                            pids=e.target.pids())
                    record(data, e.name, f"latency@{rate:g}", res, run_no, log)
    finally:
        for e in entries:
            if e.name in gens:
                gens[e.name].stop()
            data["stops"][e.name] = e.target.stop()


def record(data: dict[str, Any], target: str, scenario: str, res: dict[str, Any], run_no: int, log: Any) -> None:
    res.update(target=target, scenario=scenario, run=run_no)
    data["results"].append(res)
    load = res["machine"].get("loadavg") or [0]
    settle = (res.get("settle_resources") or {}).get("server") or {}
    log(f"{summary.one_line(res)}, redis CPU {(res['resources'].get('redis') or {}).get('cpu_pct', '-')}%, "
        f"server CPU while settling {settle.get('cpu_pct', '-')}%, machine {res['machine'].get('busy_pct')}%, "
        f"steal {res['machine'].get('steal_pct', '-')}%, load {load[0]:.2f}")


# -- the table -------------------------------------------------------------------------------
def per_notification_us(r: dict[str, Any]) -> float:
    """Server + redis CPU over the window per notification sent in it, in microseconds."""
    res = r["resources"]
    cpu = res["server"]["cpu_s"] + ((res.get("redis") or {}).get("cpu_s") or 0.0)
    return cpu / max(r["sent"], 1) * 1e6


def per_delivery_us(r: dict[str, Any]) -> float:
    """Server + redis CPU per delivery over a saturation window: what the server paid, whatever CPU it got."""
    res = r["resources"]
    cpu = res["server"]["cpu_s"] + ((res.get("redis") or {}).get("cpu_s") or 0.0)
    return cpu / max(r["deliveries_per_s"] * res["server"]["wall_s"], 1) * 1e6


def _both_pct(r: dict[str, Any]) -> float:
    return r["resources"]["server"]["cpu_pct"] + ((r["resources"].get("redis") or {}).get("cpu_pct") or 0)


def _res(group: str) -> Any:
    return lambda r: (r["resources"].get(group) or {})["cpu_pct"]


def markdown(data: dict[str, Any]) -> str:
    env, cfg = data["environment"], data["config"]
    rates = [f"latency@{r:g}" for r in cfg["rate"]]
    flags = cfg["notisync_args"] or ("none (as shipped: --ws-rate-limit 50, burst 200; --post-rate 20 per user,"
                                     " burst 100; log level INFO;"
                                     " event loop auto: uvloop where installed, the peers on asyncio unless --uvloop)")
    out = [f"### bench/compare.py --case independent — {env['started'][:10]}, commit {env['commit']}"
           f"{' (dirty)' if env['dirty'] else ''}", "",
           f"{env['cpus']} cores ({env.get('cpu_model', '?')}), Python {env['python']}, loopback; "
           f"{cfg['users']} users × {cfg['devices']} devices; generator loop {cfg['gen_loop']}; "
           f"frame ids: {'yes (loop closed on acks)' if cfg['frame_ids'] else 'none (loop closed on delivery)'}; "
           f"windows of {cfg['duration']:g} s starting {cfg['settle']:g} s after connecting; NotiSync flags: {flags}; "
           f"{cfg['runs']} interleaved run(s), median (min–max). Load average at the start: "
           f"{' / '.join(f'{x:.2f}' for x in env['loadavg'])}.", ""]
    head = ["server", "saturation deliveries/s", "sat. server + redis CPU %", "sat. CPU µs/delivery"]
    for name in rates:
        rate = name[8:]
        head += [f"{rate}/s p50 / p99 ms", f"{rate}/s server CPU %", f"{rate}/s redis CPU %",
                 f"{rate}/s CPU µs/notification", f"{rate}/s gen CPU %"]
    head += ["sat. gen CPU %", "load (1 min)", "steal % (max)", "missing / errors"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in summary.targets_in(data):
        sat = lambda f: stat(data, t, "saturation", f)  # noqa: E731
        cells = [LABELS.get(t, t), fmt(sat(lambda r: r["deliveries_per_s"])), fmt(sat(_both_pct)),
                 fmt(sat(per_delivery_us))]
        for name in rates:
            at = lambda f: stat(data, t, name, f)  # noqa: E731
            cells += [" / ".join(fmt(at(lambda r, k=k: r["latency_ms"][k]), 1) for k in ("p50", "p99")),
                      fmt(at(_res("server"))), fmt(at(_res("redis"))), fmt(at(per_notification_us)),
                      fmt(at(_res("generator")))]
        mine = [r for r in data["results"] if r["target"] == t]
        load = spread([r["machine"]["loadavg"][0] for r in mine if r["machine"].get("loadavg")])
        cells += [fmt(sat(_res("generator"))), fmt(load, 2), f"{max(map(summary.steal, mine), default=0):.1f}",
                  f"{sum(r['missing'] for r in mine)} / {sum(sum(r['errors'].values()) for r in mine)}"]
        rows.append("| " + " | ".join(cells) + " |")
    out += rows + [""] + _variants(data, rates) + _verdict(data, cfg)
    out += [f"- WARNING: {w}" for w in summary.warnings(data)]
    return "\n".join(out) + "\n"


def _variants(data: dict[str, Any], rates: list[str]) -> list[str]:
    """With --variant: each row's settings, and its figures against notisync[base] when there is one."""
    names = [t for t in summary.targets_in(data) if t.startswith("notisync[")]
    if not names:
        return []
    out = ["Rows' settings and, for each, its medians against notisync[base]:", ""]
    rate = rates[-1] if rates else None
    base = {k: _median(data, "notisync[base]", sc, f) for k, sc, f in _keys(rate)}
    for t in names:
        setup = data["setup"].get(t, {})
        flags = setup.get("notisync_args") or "(as shipped)"
        ids = "yes" if setup.get("frame_ids") else "no"
        text = (f"- {t}: generator loop {setup.get('gen_loop')}, frame ids {ids}, "
                f"settle {setup.get('settle'):g} s, NotiSync flags {flags}")
        parts = []
        for k, sc, f in _keys(rate):
            v = _median(data, t, sc, f)
            if v is not None and base.get(k) and t != "notisync[base]":
                parts.append(f"{k} {v:,.1f} ({v / base[k]:.2f}×)")
            elif v is not None:
                parts.append(f"{k} {v:,.1f}")
        out.append(text + (": " + "; ".join(parts) if parts else ""))
    return out + [""]


def _keys(rate: str | None) -> list[tuple[str, str, Any]]:
    keys: list[tuple[str, str, Any]] = [("saturation/s", "saturation", lambda r: r["deliveries_per_s"]),
                                        ("CPU µs/delivery at saturation", "saturation", per_delivery_us)]
    if rate:
        keys += [(f"p99 ms at {rate[8:]}/s", rate, lambda r: r["latency_ms"]["p99"]),
                 (f"CPU µs/notification at {rate[8:]}/s", rate, per_notification_us)]
    return keys


def _median(data: dict[str, Any], target: str, scenario: str, get: Any) -> float | None:
    s = stat(data, target, scenario, get)
    return s["median"] if s else None


def calm_p99(data: dict[str, Any], rate: str) -> str:
    """The p99 of NotiSync's windows without steal, shown beside (never instead of) the verdict's median."""
    windows = summary.runs(data, "notisync", rate)
    calm = [r["latency_ms"]["p99"] for r in windows if not summary.disturbed_window(r)]
    if not calm or len(calm) == len(windows):
        return ""
    return (f" (in the {len(calm)} window(s) with steal ≤ {summary.STEAL_WARN_PCT:g}% of a core: "
            f"{fmt(spread(calm), 1)} ms)")


def disturbed(data: dict[str, Any], scenario: str, targets: tuple[str, ...]) -> str:
    """How many of the windows a verdict compares had steal above the warning line, per target."""
    parts = []
    for t in targets:
        windows = summary.runs(data, t, scenario)
        bad = sum(map(summary.disturbed_window, windows))
        if bad:
            parts.append(f"{LABELS.get(t, t)} {bad} of {len(windows)}")
    if not parts:
        return ""
    return (f" [disturbed: windows with steal above {summary.STEAL_WARN_PCT:g}% of a core: "
            f"{', '.join(parts)}]")


def _verdict(data: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    ours, rate = "notisync", f"latency@{500 if 500.0 in cfg['rate'] else cfg['rate'][-1]:g}"
    sat = {t: _median(data, t, "saturation", lambda r: r["deliveries_per_s"]) for t in ("notisync", "socketio",
                                                                                         "tornado")}
    cpu = {t: _median(data, t, rate, per_notification_us) for t in ("notisync", "tornado")}
    p99 = _median(data, ours, rate, lambda r: r["latency_ms"]["p99"])

    def check(ok: bool, text: str, scenario: str, targets: tuple[str, ...]) -> None:
        lines.append(f"- {'met' if ok else 'MISSED'}: {text}{disturbed(data, scenario, targets)}")

    if cpu["notisync"] and cpu["tornado"]:
        x = cpu["notisync"] / cpu["tornado"]
        check(x <= CPU_VS_TORNADO, f"server + redis CPU per notification at {rate[8:]}/s ≤ {CPU_VS_TORNADO}× bare "
              f"Tornado — measured {cpu['notisync']:.0f} µs against {cpu['tornado']:.0f} µs, {x:.2f}×",
              rate, (ours, "tornado"))
    if p99 is not None:
        check(p99 <= P99_MS, f"p99 at {rate[8:]}/s ≤ {P99_MS:g} ms — measured {p99:.1f} ms" + calm_p99(data, rate),
              rate, (ours,))
    if sat["notisync"] and sat["socketio"]:
        x = sat["notisync"] / sat["socketio"]
        check(x >= SAT_VS_SOCKETIO, f"saturation ≥ {SAT_VS_SOCKETIO:g}× python-socketio + Redis — measured "
              f"{sat['notisync']:,.0f} against {sat['socketio']:,.0f} deliveries/s, {x:.2f}×",
              "saturation", (ours, "socketio"))
    if sat["notisync"] and sat["tornado"]:
        x = sat["notisync"] / sat["tornado"]
        check(x >= SAT_VS_TORNADO, f"saturation ≥ {SAT_VS_TORNADO:g}× bare Tornado — measured "
              f"{sat['notisync']:,.0f} against {sat['tornado']:,.0f} deliveries/s, {x:.2f}×",
              "saturation", (ours, "tornado"))
    return ["Targets (issue 10, this case):", "", *lines, ""] if lines else []

