"""The load generator's process: a Fleet driven by commands from the parent over a Pipe.

A separate process keeps the generator's event loop off the server's, and
its CPU is sampled on its own so a generator-bound run can say so. It runs
on uvloop, the cheapest loop available, whatever the server under test uses,
unless the config says loop="asyncio" (the independent harness's case).
"""
from __future__ import annotations

import asyncio
import signal
from typing import Any, Awaitable, Callable

from bench import scenarios
from bench.fleet import Fleet


def run(conn: Any, config: dict[str, Any]) -> None:
    """multiprocessing target. Ctrl-C goes to the parent, which tells us to quit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = dict(config)
    if config.pop("loop", "uvloop") == "asyncio":
        asyncio.run(_serve(conn, config))
        return
    try:
        import uvloop
        uvloop.run(_serve(conn, config))
    except ImportError:
        asyncio.run(_serve(conn, config))


async def _serve(conn: Any, config: dict[str, Any]) -> None:
    fleet = Fleet(**config)
    commands: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "prepare": fleet.prepare, "connect": fleet.connect,
        "warmup": lambda **a: scenarios.warmup(fleet, **a),
        "saturate": lambda **a: scenarios.saturate(fleet, **a),
        "latency": lambda **a: scenarios.latency(fleet, **a),
        "rest_saturate": lambda **a: scenarios.rest_saturate(fleet, **a),
        "catchup": lambda **a: scenarios.catchup(fleet, **a),
        "window": lambda **a: scenarios.window(fleet, **a),
        "loop": _loop_name,
    }
    loop = asyncio.get_running_loop()
    try:
        while True:
            command, args = await loop.run_in_executor(None, _receive, conn)
            if command not in commands:
                return
            try:
                result = await commands[command](**args)
            except Exception as exc:  # report to the parent instead of dying silently
                result = {"error": f"{type(exc).__name__}: {exc}"}
            conn.send(result)
    finally:
        await fleet.close()


async def _loop_name() -> dict[str, Any]:
    return {"loop": type(asyncio.get_running_loop()).__module__}


def _receive(conn: Any) -> tuple[str, dict[str, Any]]:
    try:
        return conn.recv()
    except (EOFError, OSError):  # the parent went away
        return "quit", {}
