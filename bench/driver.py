"""The parent's side of one generator process, and resource sampling around each command."""
from __future__ import annotations

import multiprocessing
import os
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from bench import genproc
from bench.common import machine_sample, machine_usage, proc_sample
from bench.targets import Target


class Generator:
    """One load-generator process bound to one target."""

    def __init__(self, target: Target, users: int, devices: int, **options: Any) -> None:
        # options: loop="asyncio" (default uvloop), frame_ids=False, resume=False (bench/fleet.py)
        config = {"ports": target.ports, "users": users, "devices": devices, "dialect": target.dialect,
                  "accounts": target.accounts, **options}
        ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited loop or sockets
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=genproc.run, args=(child, config), name=f"loadgen-{target.name}")
        self.proc.start()
        child.close()
        self.target = target
        self.prepared: dict[str, Any] = {}  # what "prepare" answered (see started())

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
            raise RuntimeError(f"{self.target.name}: load generator failed in {command!r}: {result['error']}")
        return result

    def measured(self, command: str, timeout: float, **args: Any) -> dict[str, Any]:
        """Run one command with the server, its redis and the generator sampled around it."""
        groups = {**self.target.pids(), "generator": [self.proc.pid]}
        before = {name: _sample(pids) for name, pids in groups.items()}
        machine_before = machine_sample()
        result = self.call(command, timeout, **args)
        machine_after = machine_sample()
        after = {name: _sample(pids) for name, pids in groups.items()}
        result["resources"] = {name: _usage(before[name], after[name]) for name in groups}
        usage = machine_usage(machine_before, machine_after)
        busy = usage["busy_pct"]
        ours = sum((r or {}).get("cpu_pct", 0) for r in result["resources"].values())
        result["machine"] = {"cpus": os.cpu_count(), **usage, "others_pct": busy and round(max(0.0, busy - ours), 1)}
        return result

    def stop(self, graceful: bool = True) -> None:
        if graceful and self.proc.is_alive():
            try:
                self.conn.send(("quit", {}))
            except OSError:
                pass
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


@contextmanager
def started(targets: Sequence[Target], users: int, devices: int, stops: dict[str, Any] | None = None,
            **options: Any) -> Iterator[dict[str, Generator]]:
    """Each target started, with a generator process of its own and its users prepared
    (accounts, devices: ``Generator.prepared``); on the way out, even after a failure, every
    generator and every target stopped. ``stops`` gets each target's stop report by name."""
    gens: dict[str, Generator] = {}
    try:
        for t in targets:
            t.start()
            gens[t.name] = gen = Generator(t, users, devices, **options)
            gen.prepared = gen.call("prepare", timeout=300 + users * 2)
        yield gens
    finally:
        for t in targets:
            if t.name in gens:
                gens[t.name].stop()
            report = t.stop()
            if stops is not None:
                stops[t.name] = report


def _sample(pids: list[int]) -> dict[str, float] | None:
    samples = [proc_sample(pid) for pid in pids]
    samples = [s for s in samples if s]
    if not samples:
        return None
    return {"cpu_s": sum(s["cpu_s"] for s in samples), "rss_mb": sum(s["rss_mb"] for s in samples),
            "t": samples[0]["t"]}


def _usage(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any] | None:
    if not before or not after:
        return None
    wall = max(after["t"] - before["t"], 1e-9)
    cpu_s = after["cpu_s"] - before["cpu_s"]
    return {"cpu_s": round(cpu_s, 3), "cpu_pct": round(cpu_s / wall * 100, 1),
            "rss_mb_before": round(before["rss_mb"], 1), "rss_mb_after": round(after["rss_mb"], 1)}
