#!/usr/bin/env python3
"""python-socketio peer: the same fan-out as a Python team would otherwise deploy it.

    python bench/peers/socketio_server.py --port 8103 --redis-url redis://127.0.0.1:6379/0 \
        [--host 127.0.0.1] [--async-mode tornado|aiohttp] [--uvloop]

socketio.AsyncServer with an AsyncRedisManager (the multi-node configuration:
every emit is also published on Redis, even with one node), one room per
user, served by Tornado (default) or aiohttp. See README.md for the packets.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import logging
import signal
import sys
from typing import Any

import orjson
import redis.asyncio
import socketio

import peer_cli  # noqa: E402  (sibling module; see peer_cli.py)

log = logging.getLogger("peer.socketio")

CONNECTED: set[str] = set()   # Socket.IO sids past the namespace CONNECT (what /health counts)
_ids = itertools.count(1)     # unique enough within one node: nothing is stored


class OrjsonModule:
    """orjson behind the json-module interface Socket.IO and Engine.IO call.

    It works: they only call dumps(obj, separators=...) and loads(str|bytes).
    dumps must return str because Packet.encode() concatenates it to the
    packet header, hence the decode; keyword arguments are ignored (orjson is
    always compact). Set globally, so the Redis manager uses it too.
    """

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(s: str | bytes, *args: Any, **kwargs: Any) -> Any:
        return orjson.loads(s)


def now_iso() -> str:
    # The same format NotiSync's protocol.iso() writes, so each peer pays the same.
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def make_server(redis_url: str, async_mode: str, redis_pool: int) -> socketio.AsyncServer:
    # Every in-flight emit holds one pooled Redis connection while it publishes,
    # and redis-py's async pool (default 100) raises instead of waiting when it
    # is empty: the manager then logs "Cannot publish to redis", reconnects with
    # a fresh pool and drops the message for other nodes. A deployment under
    # load must raise the limit, so we do (--redis-pool).
    manager = socketio.AsyncRedisManager(redis_url, redis_options={"max_connections": redis_pool})
    sio = socketio.AsyncServer(
        async_mode=async_mode, client_manager=manager, json=OrjsonModule,
        cors_allowed_origins="*", logger=log, engineio_logger=log,  # our logger: WARNING, one line each
    )  # ping_interval/ping_timeout left at Socket.IO's defaults (25 s / 20 s)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> bool:
        if not isinstance(auth, dict) or not auth.get("user"):
            return False  # Socket.IO answers 44{"message":"Connection rejected by server"}
        user = str(auth["user"])
        await sio.save_session(sid, {"user": user, "device_id": str(auth.get("device_id", ""))})
        await sio.enter_room(sid, user)
        CONNECTED.add(sid)
        return True

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        CONNECTED.discard(sid)

    @sio.on("new_notification")
    async def new_notification(sid: str, data: Any = None) -> dict[str, Any]:
        if not isinstance(data, dict):
            return {"error": {"code": "invalid_frame", "message": "data must be an object"}}
        session = await sio.get_session(sid)
        nid = str(next(_ids))
        stamp = now_iso()
        payload = {**data, "id": nid, "category": data.get("category", "Personal"),
                   "priority": data.get("priority", "normal"),
                   "source_device_id": session["device_id"], "created_at": stamp}
        await sio.emit("new_notification", payload, room=session["user"], skip_sid=sid)
        return {"notification_id": nid}  # sent back as the ack packet 43<ackid>[{...}]

    return sio


def health_body() -> bytes:
    return orjson.dumps({"status": "ok", "connections": len(CONNECTED)})


async def check_redis(url: str) -> None:
    # Fail at start rather than on the first emit: the manager connects lazily.
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def stop_socketio(sio: socketio.AsyncServer) -> None:
    # An Engine.IO close to every client, with no Redis traffic. Each close
    # waits for that socket's send queue to drain, which never happens for a
    # client that already vanished: bound it, the exit closes the rest.
    closing = [asyncio.ensure_future(sio.eio.disconnect(sid)) for sid in list(sio.eio.sockets)]
    if closing:
        _, pending = await asyncio.wait(closing, timeout=1.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)
    await sio.shutdown()  # Engine.IO's ping service task
    listener = getattr(sio.manager, "thread", None)  # the Redis subscriber task
    if listener is not None:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
    if getattr(sio.manager, "redis", None) is not None:
        await sio.manager.redis.aclose()


async def serve_tornado(sio: socketio.AsyncServer, host: str, port: int, stop: asyncio.Event) -> None:
    import tornado.web
    from tornado.httpserver import HTTPServer

    class HealthHandler(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.finish(health_body())

    app = tornado.web.Application([(r"/socket.io/", socketio.get_tornado_handler(sio)),
                                   (r"/health", HealthHandler)])
    server = HTTPServer(app)
    server.listen(port, host)
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    server.stop()
    await stop_socketio(sio)
    try:
        await asyncio.wait_for(server.close_all_connections(), 1.0)
    except asyncio.TimeoutError:
        pass


async def serve_aiohttp(sio: socketio.AsyncServer, host: str, port: int, stop: asyncio.Event) -> None:
    from aiohttp import web

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=health_body(), content_type="application/json")

    app = web.Application()
    sio.attach(app)  # serves /socket.io/
    app.router.add_get("/health", health)
    # shutdown_timeout bounds the wait for open WebSocket handlers (default 60 s).
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    await stop_socketio(sio)
    await runner.cleanup()


async def serve(args: argparse.Namespace) -> None:
    await check_redis(args.redis_url)
    sio = make_server(args.redis_url, args.async_mode, args.redis_pool)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serve_mode = serve_aiohttp if args.async_mode == "aiohttp" else serve_tornado
    # Shutdown gets a bounded time; whatever is left, the process exit closes.
    main_task = asyncio.ensure_future(serve_mode(sio, args.host, args.port, stop))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([main_task, stopped], return_when=asyncio.FIRST_COMPLETED)
    if main_task.done():  # it failed before any signal (e.g. the port is taken)
        stopped.cancel()
        return main_task.result()
    try:
        await asyncio.wait_for(main_task, 3.0)
    except asyncio.TimeoutError:
        log.warning("shutdown took over 3 s; exiting anyway")


def main() -> int:
    parser = peer_cli.parser(__doc__)
    parser.add_argument("--redis-url", required=True,
                        help="redis://HOST:PORT/DB or unix:///path/to/redis.sock")
    parser.add_argument("--redis-pool", type=int, default=1000,
                        help="max Redis connections (one per emit in flight; default 1000)")
    parser.add_argument("--async-mode", choices=("tornado", "aiohttp"), default="tornado")
    args = parser.parse_args()
    return peer_cli.run(args, lambda: serve(args), start_errors=(OSError, redis.RedisError))


if __name__ == "__main__":
    sys.exit(main())
