"""The command line every peer shares: --host/--port/--uvloop/--log-level, then run.

Imported as a sibling module (``python bench/peers/X.py`` puts this
directory first on ``sys.path``), so each peer still runs from anywhere.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any, Callable, Coroutine


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--uvloop", action="store_true", help="run on uvloop (default: asyncio's loop)")
    p.add_argument("--log-level", default="WARNING")
    return p


def run(args: argparse.Namespace, serve: Callable[[], Coroutine[Any, Any, None]],
        start_errors: tuple[type[BaseException], ...] = (OSError,)) -> int:
    """Run ``serve()`` until SIGTERM/SIGINT; 2 if it cannot start (port taken, backend down)."""
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop_factory = None
    if args.uvloop:
        import uvloop
        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve())
    except KeyboardInterrupt:
        pass
    except start_errors as exc:
        print(f"cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0
