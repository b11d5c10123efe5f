"""Start a node, serve until SIGTERM/SIGINT, then shut down in order."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Callable, Sequence

from notisync import protocol
from notisync.runtime import gctune, logs, redis_topology, startup, workers
from notisync.runtime.app import make_app
from notisync.runtime.config import Settings, parse_settings, prog_name
from notisync.runtime.hygiene import restrict_umask
from notisync.runtime.memory import limit_malloc_arenas
from notisync.runtime.proxies import make_http_server
from notisync.runtime.services import Services

log = logging.getLogger("notisync")

# Bodies past the API's own 64 KiB limit still reach the handler (which
# answers 413); past this the connection itself is refused.
HARD_BODY_LIMIT = 1024 * 1024
CLOSE_GRACE = 1.0    # seconds for clients to answer the close frame
DRAIN_SECONDS = 5.0  # then for every socket's unregistering to finish
FINISH_SECONDS = 10.0  # for requests already being handled when the signal came


async def serve(settings: Settings) -> None:
    # Signals are ours from the first moment: one during the start cancels
    # it (what had started is stopped) instead of leaving redis-server behind.
    stop, signums = _stop_on_signals()
    # One of --workers N: the parent's listening sockets; else our own.
    sockets = workers.inherited_sockets() or startup.listen_sockets(settings.host, settings.port)
    try:
        services = await startup.until_signalled(_start(settings), stop, signums, undo=Services.stop)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    app = make_app(services)
    server = make_http_server(
        settings.trusted_proxies, app, max_body_size=HARD_BODY_LIMIT, http_timeout=settings.http_timeout,
        # Connections from a trusted proxy are not capped: the proxy caps per client.
        max_per_address=settings.max_connections_per_address,
    )
    server.add_sockets(sockets)
    gctune.tune_after_startup()
    log.info(
        "NotiSync node %s listening on http://%s:%d (store: %s, redis: %s, event loop: %s)",
        settings.node_id, settings.host, settings.port, services.store.backend,
        f"embedded at {services.redis_url}" if services.embedded else redis_topology.describe(settings),
        _loop_name(),
    )
    workers.report_ready()
    await stop.wait()
    log.info("shutting down")
    server.stop()  # no new connections
    await _finish_accepted(services)
    await _drain(services)
    await server.close_all_connections()
    await services.stop()
    log.info("stopped")


async def _start(settings: Settings) -> Services:
    created = startup.prepare_data_dir(settings.data_dir)
    startup.log_data_dir(settings.data_dir, created)
    await startup.check_dependencies(settings)
    return await Services.create(settings)


def _stop_on_signals() -> tuple[asyncio.Event, list[int]]:
    stop, signums = asyncio.Event(), []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        signums.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop, signums


async def _finish_accepted(services: Services) -> None:
    """Let requests and client frames already being handled finish; refuse new ones (503).

    A post that was accepted is answered, and its fan-out done, before any
    socket closes or Redis goes away; a post that arrives now is refused,
    so its client retries elsewhere.
    """
    lifecycle = services.lifecycle
    lifecycle.draining = True
    await _until(lambda: lifecycle.idle, FINISH_SECONDS)
    if not lifecycle.idle:
        log.warning("%d requests still running after %.0fs; shutting down under them",
                    lifecycle.in_flight, FINISH_SECONDS)


async def _drain(services: Services) -> None:
    """Close every socket and let it unregister (presence, cursors) before Redis goes away.

    Clients get CLOSE_GRACE seconds to answer the close; the rest are
    dropped, so a client that never answers cannot keep its presence alive
    past the node (it would otherwise linger until the TTL expired).
    """
    hub = services.hub
    cleanups = services.lifecycle.socket_cleanups
    for conn in list(hub.all()):
        conn.close(protocol.CLOSE_GOING_AWAY, "server shutting down")
    await _until(lambda: not hub.count, CLOSE_GRACE)
    for conn in list(hub.all()):
        conn.abort()
    await _until(lambda: not (hub.count or cleanups), DRAIN_SECONDS)
    if hub.count or cleanups:
        log.warning("%d sockets still unregistering at shutdown; their presence expires by TTL",
                    max(hub.count, len(cleanups)))


async def _until(done: Callable[[], bool], seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not done() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["adduser"]:
        from notisync.runtime.adduser import main as adduser

        return adduser(args[1:])
    restrict_umask()  # first: every file and dir created from here on is private
    limit_malloc_arenas()  # before the store's worker thread starts
    try:
        settings = parse_settings(args)
        logs.configure(settings)  # --log-level, --log-format; warns about plain HTTP beyond loopback
        if settings.workers > 1:
            return workers.run(settings, args)
        with asyncio.Runner(loop_factory=_loop_factory(settings.event_loop)) as runner:
            runner.run(serve(settings))
    except startup.Interrupted as exc:
        log.error("interrupted while starting (signal %d); stopped what had started", exc.signum)
        return 128 + exc.signum
    except KeyboardInterrupt:  # before the loop ran: nothing had started
        print(f"{prog_name()}: error: interrupted while starting", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the operator; the traceback at --log-level DEBUG
        log.debug("start failed", exc_info=True)
        log.error("%s", startup.describe(exc))
        return 1
    return 0


def _loop_name() -> str:
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop by default: the same node cost ~10 % less CPU per notification
    # at 500/s and ~15 % less at saturation (README "Fifth pass"). It is a
    # dependency wherever it builds (not on Windows); there, auto is asyncio.
    if name == "asyncio":
        return None  # asyncio's default loop
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return None
    return uvloop.new_event_loop
