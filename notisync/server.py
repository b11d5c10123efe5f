"""Start a node, serve until SIGTERM/SIGINT, then shut down in order."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Sequence

from tornado.httpserver import HTTPServer

from notisync import protocol
from notisync.app import make_app
from notisync.memory import limit_malloc_arenas
from notisync.config import Settings, parse_settings
from notisync.services import Services

log = logging.getLogger("notisync")

# Bodies past the API's own 64 KiB limit still reach the handler (which
# answers 413); past this the connection itself is refused.
HARD_BODY_LIMIT = 1024 * 1024
DRAIN_SECONDS = 3.0


async def serve(settings: Settings) -> None:
    services = Services(settings)
    await services.start()
    server = HTTPServer(make_app(services), max_body_size=HARD_BODY_LIMIT)
    server.listen(settings.port, settings.host)
    log.info(
        "NotiSync node %s listening on http://%s:%d (store: %s, redis: %s)",
        settings.node_id, settings.host, settings.port, services.store.backend,
        f"embedded at {services.redis_url}" if services.embedded else "external",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    server.stop()
    for conn in list(services.hub.all()):
        conn.close(protocol.CLOSE_GOING_AWAY, "server shutting down")
    await _drain(services)
    await server.close_all_connections()
    await services.stop()
    log.info("stopped")


async def _drain(services: Services) -> None:
    """Let closing sockets unregister (presence, cursors) before Redis goes away."""
    deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
    while services.hub.count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    limit_malloc_arenas()  # before the store's worker thread starts
    settings = parse_settings(argv)
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0
