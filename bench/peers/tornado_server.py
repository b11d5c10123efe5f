#!/usr/bin/env python3
"""Bare Tornado peer: NotiSync's WebSocket fan-out with nothing else.

    python bench/peers/tornado_server.py --port 8101 [--host 127.0.0.1] [--uvloop]

The framework's own ceiling: same framework, same frames as NotiSync's /ws,
but no auth, no storage, no Redis, no rate limit. Users and their sockets
live in one in-process dict. See README.md for the wire protocol.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import signal
import sys
from typing import Any

import orjson
import tornado.web
import tornado.websocket
from tornado.httpserver import HTTPServer
from tornado.websocket import WebSocketClosedError

import peer_cli  # noqa: E402  (sibling module; see peer_cli.py)

log = logging.getLogger("peer.tornado")

USERS: dict[str, set["WsHandler"]] = {}
_ids = itertools.count(1)  # a per-process counter is unique enough: nothing is stored


def now_iso() -> str:
    # The same format NotiSync's protocol.iso() writes, so each peer pays the same.
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def connection_count() -> int:
    return sum(len(s) for s in USERS.values())


def _consume(future: "asyncio.Future[None]") -> None:
    # Writes are not awaited; read their outcome so a closed stream's error
    # is not reported as "exception never retrieved". on_close cleans up.
    if not future.cancelled():
        future.exception()


class WsHandler(tornado.websocket.WebSocketHandler):
    user = ""
    device_id = ""

    def check_origin(self, origin: str) -> bool:
        return True  # like NotiSync's default: any origin

    def open(self) -> None:
        user = self.get_query_argument("user", "")
        self.device_id = self.get_query_argument("device_id", "")
        if not user:
            self.close(1008, "missing user")
            return
        self.user = user
        USERS.setdefault(user, set()).add(self)

    def on_close(self) -> None:
        peers = USERS.get(self.user)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del USERS[self.user]

    def send(self, frame: bytes) -> None:
        # bytes with binary=False is a *text* frame in Tornado (the opcode
        # follows the flag, not the type): exactly what NotiSync passes.
        try:
            self.write_message(frame).add_done_callback(_consume)
        except WebSocketClosedError:
            pass

    def on_message(self, message: str | bytes) -> None:
        if not self.user:
            return
        frame_id = None
        try:
            envelope = orjson.loads(message)
            if not isinstance(envelope, dict):
                raise ValueError("frame must be a JSON object")
        except ValueError:
            self.send(error_frame("invalid_json", "frame is not valid JSON", None))
            return
        frame_id = envelope.get("id")
        kind = envelope.get("type")
        data = envelope.get("data")
        if kind == "new_notification" and isinstance(data, dict):
            nid = str(next(_ids))
            stamp = now_iso()
            payload = {"type": "new_notification", "timestamp": stamp, "data": {
                **data, "id": nid, "category": data.get("category", "Personal"),
                "priority": data.get("priority", "normal"),
                "source_device_id": self.device_id, "created_at": stamp}}
            encoded = orjson.dumps(payload)  # once, whatever the fan-out
            for other in USERS.get(self.user, ()):
                if other is not self:
                    other.send(encoded)
            self.send(orjson.dumps({"type": "ack", "data": {"id": frame_id, "notification_id": nid},
                                    "timestamp": stamp}))
        elif kind == "ping":
            stamp = now_iso()
            self.send(orjson.dumps({"type": "pong", "data": {"timestamp": stamp}, "timestamp": stamp}))
        else:
            self.send(error_frame("invalid_frame", f"unknown or malformed frame {kind!r}", frame_id))


def error_frame(code: str, message: str, frame_id: Any) -> bytes:
    data: dict[str, Any] = {"code": code, "message": message}
    if frame_id is not None:
        data["id"] = frame_id
    return orjson.dumps({"type": "error", "data": data, "timestamp": now_iso()})


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"status": "ok", "connections": connection_count()}))


async def serve(host: str, port: int) -> None:
    app = tornado.web.Application(
        [(r"/ws", WsHandler), (r"/health", HealthHandler)],
        # The real server's heartbeat and frame limit (a larger frame closes with 1009).
        websocket_ping_interval=30, websocket_ping_timeout=30,
        websocket_max_message_size=64 * 1024,
    )
    server = HTTPServer(app)
    server.listen(port, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    server.stop()
    for handler in [h for peers in USERS.values() for h in peers]:
        handler.close(1001, "server shutting down")
    # Give close frames a moment to leave; the process exit closes the rest.
    deadline = loop.time() + 1.0
    while USERS and loop.time() < deadline:
        await asyncio.sleep(0.05)
    try:
        await asyncio.wait_for(server.close_all_connections(), 1.0)
    except asyncio.TimeoutError:
        pass


def main() -> int:
    parser = peer_cli.parser(__doc__)
    args = parser.parse_args()
    return peer_cli.run(args, lambda: serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
