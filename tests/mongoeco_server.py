"""Serve mongoeco's MongoDB wire protocol on a loopback port (it has no command of its own).

Runs under Python 3.13 in its own venv (``mongoeco[wire]==4.11.0``), not the
project's: the test fixture starts it with NOTISYNC_MONGOECO_PYTHON. It is a
MongoDB-compatible server kept in memory, not MongoDB.

    $NOTISYNC_MONGOECO_PYTHON tests/mongoeco_server.py --port 27999

Prints ``READY <port>`` once listening, exits 0 on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from mongoeco.wire import AsyncMongoEcoProxyServer


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncMongoEcoProxyServer(host=host, port=port) as server:
        print(f"READY {server.address.port}", flush=True)
        await stop.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
