#!/usr/bin/env python3
"""End-to-end delivery latency and throughput of one NotiSync node.

    python bench/latency.py [--users 50 --devices 4 --rate 100 --rate 500 --duration 10 --saturate]

The script starts its own node (`run.py` with a fresh temp data dir, embedded
SQLite and redis) and runs the load generator in a second process
(bench/loadgen.py). Each user has one phone (device 0, type mobile) that
posts notifications and D-1 receivers that read `/ws`. Scenarios:

- latency at each --rate: an open-loop schedule of R notifications/s spread
  over the phones. Latency is receive time minus the send time embedded in
  the body (same machine, same clock).
- saturation (--saturate): the phones send as fast as the server answers for
  --duration seconds. We report the deliveries/s it sustained and whether
  everything arrived within --drain seconds.

Exit code: 0 if every accepted notification reached every receiver with no
errors, 1 if not, 2 if the run could not be set up, 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import loadgen  # noqa: E402
from bench.clients import SAFE_WS_RATE  # noqa: E402
from bench.node import ServerNode, machine_sample, proc_sample, usage  # noqa: E402
from bench.report import print_tables, verdict  # noqa: E402

RESULTS_DIR = os.path.join(ROOT, "bench", "results")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=50, help="users, each with one phone (default 50)")
    p.add_argument("--devices", type=int, default=4, help="devices per user, phone included (default 4)")
    p.add_argument("--rate", type=float, action="append", help="notifications/s, repeatable (default 100 and 500)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (default 10)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for stragglers (default 10)")
    p.add_argument("--via", choices=("ws", "rest"), default="ws", help="how phones post (default ws)")
    p.add_argument("--saturate", action="store_true", help="also run the closed-loop saturation scenario")
    p.add_argument("--window", type=int, default=8, help="unanswered WS frames per phone when saturating")
    p.add_argument("--rest-concurrency", type=int, default=32, help="REST requests in flight when saturating")
    p.add_argument("--keep", action="store_true", help="keep the server's data dir and log")
    args = p.parse_args(argv)
    args.rate = args.rate or [100.0, 500.0]
    _check_args(p, args)
    return args


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.users <= 2000 or not 2 <= args.devices <= 20:
        p.error("need 1..2000 users and 2..20 devices per user (a phone and at least one receiver)")
    if not 0 < args.duration <= 300 or not 0 < args.drain <= 120:
        p.error("--duration must be in (0, 300] and --drain in (0, 120]")
    if any(r <= 0 or r > 20000 for r in args.rate):
        p.error("--rate must be in (0, 20000]")
    if args.via == "ws" and max(args.rate) / args.users > SAFE_WS_RATE:
        # Past this the server's per-socket limit (50/s) would reject frames,
        # and we would be measuring the limiter.
        p.error(f"--rate {max(args.rate):g} over WS needs at least "
                f"{int(max(args.rate) / SAFE_WS_RATE) + 1} users ({SAFE_WS_RATE:g}/s per phone)")


# -- the generator process ----------------------------------------------------------------
class Generator:
    def __init__(self, config: dict[str, Any]) -> None:
        ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited loop or sockets
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=loadgen.run, args=(child, config), name="notisync-loadgen")
        self.proc.start()
        child.close()

    def call(self, command: str, timeout: float, **args: Any) -> dict[str, Any]:
        try:
            self.conn.send((command, args))
            if not self.conn.poll(timeout):
                raise RuntimeError(f"load generator did not answer {command!r} within {timeout:g}s")
            result = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.proc.join(1)
            raise RuntimeError(f"load generator died in {command!r} (exit code {self.proc.exitcode}): {exc!r}")
        if "error" in result:
            raise RuntimeError(f"load generator failed in {command!r}: {result['error']}")
        return result

    def stop(self, graceful: bool = True) -> None:
        """Graceful: ask it to close its sockets and exit. Otherwise (Ctrl-C mid-scenario) terminate it."""
        if graceful and self.proc.is_alive():
            try:
                self.conn.send(("quit", {}))
            except OSError:
                pass
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def measured(node: ServerNode, gen: Generator, command: str, timeout: float, **args: Any) -> dict[str, Any]:
    """Run one generator command with server, redis and generator CPU/RSS sampled around it."""
    pids = {"server": node.proc.pid if node.proc else None, "redis": node.redis_pid(), "generator": gen.proc.pid}
    before = {name: proc_sample(pid) for name, pid in pids.items()}
    machine_before = machine_sample()
    result = gen.call(command, timeout, **args)
    machine_after = machine_sample()
    after = {name: proc_sample(pid) for name, pid in pids.items()}
    result["resources"] = {name: usage(before[name], after[name]) for name in pids}
    # Everything else running on the machine: a busy neighbour explains a slow run.
    machine = usage(machine_before, machine_after)
    ours = sum((r or {}).get("cpu_pct", 0) for r in result["resources"].values())
    result["machine"] = {"cpus": os.cpu_count(), "busy_pct": machine and machine["cpu_pct"],
                         "others_pct": machine and round(max(0.0, machine["cpu_pct"] - ours), 1)}
    return result


# -- the run -----------------------------------------------------------------------------
def run_scenarios(args: argparse.Namespace, node: ServerNode, gen: Generator) -> dict[str, Any]:
    budget = args.duration + args.drain + 60  # generous, but a hung generator still ends the run
    setup = gen.call("setup", timeout=120 + args.users)
    print(f"setup: {args.users} users x {args.devices} devices, {setup['sockets']} sockets "
          f"(server counts {setup['server_connections']}) in {setup['seconds']}s", flush=True)
    warmup = measured(node, gen, "warmup", budget, drain=args.drain)
    scenarios = []
    for i, rate in enumerate(args.rate):
        print(f"latency: {rate:g}/s for {args.duration:g}s via {args.via} ...", flush=True)
        scenarios.append({"scenario": "latency", **measured(
            node, gen, "latency", budget, rate=rate, duration=args.duration, drain=args.drain, tag=f"L{i}")})
    if args.saturate:
        print(f"saturation: {args.duration:g}s via {args.via} ...", flush=True)
        scenarios.append({"scenario": "saturation", **measured(
            node, gen, "saturate", budget, duration=args.duration, drain=args.drain, tag="S")})
    return {"setup": setup, "warmup": warmup, "scenarios": scenarios}


def write_json(data: dict[str, Any]) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"latency-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


def environment() -> dict[str, Any]:
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", ROOT, *cmd], capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    # The node runs from the working tree, so uncommitted server edits are part of what was measured.
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "python": sys.version.split()[0], "cpus": os.cpu_count(), "loadavg": os.getloadavg(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM to us: clean up exactly as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    node = ServerNode()
    gen: Generator | None = None
    data: dict[str, Any] = {"config": vars(args), "environment": environment()}
    code = 2
    try:
        node.start()
        print(f"server pid {node.proc.pid} on 127.0.0.1:{node.port}, data dir {node.data_dir}", flush=True)
        gen = Generator({"port": node.port, "users": args.users, "devices": args.devices, "via": args.via,
                         "window": args.window, "rest_concurrency": args.rest_concurrency})
        data.update(run_scenarios(args, node, gen))
        code = 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the generator and the server", file=sys.stderr)
        code = 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        data["error"] = str(exc)
    finally:
        # Cleanup must finish even if Ctrl-C is pressed again, or the node and its redis would be left behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if gen is not None:
            gen.stop(graceful=code != 130)
        data["server_stop"] = node.stop()
        data["server_log"] = node.log_problems()
    if code == 0:
        code = report(data)
    elif code == 2:
        print(f"partial results: {os.path.relpath(write_json(data), os.getcwd())}", file=sys.stderr)
    if args.keep or code not in (0, 130):
        print(f"server data dir and log kept in {node.data_dir}", file=sys.stderr)
    else:
        shutil.rmtree(node.data_dir, ignore_errors=True)
    return code


def report(data: dict[str, Any]) -> int:
    print_tables(data)
    problems = verdict(data)
    data["problems"] = problems
    path = write_json(data)
    print(f"\nresults: {os.path.relpath(path, os.getcwd())}")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
