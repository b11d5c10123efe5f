#!/usr/bin/env python3
"""Bare asyncio peer: NotiSync's WebSocket fan-out on an asyncio.Protocol, no framework.

    python bench/peers/asyncio_server.py --port 8102 [--host 127.0.0.1] [--uvloop]

The practical Python ceiling: a hand-parsed HTTP/1.1 upgrade, then the
benchmark's own RFC 6455 codec (bench/wsproto.py). Same /ws?user=&device_id=
and the same frames as the bare Tornado peer. See README.md.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import os
import signal
import struct
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

# Run as `python bench/peers/asyncio_server.py` from anywhere: make `bench` importable.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.wsproto import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,  # noqa: E402
                           FrameReader, accept_key, server_frame)

import peer_cli  # noqa: E402  (sibling module; see peer_cli.py)

log = logging.getLogger("peer.asyncio")

MAX_MESSAGE = 64 * 1024      # like NotiSync's websocket_max_message_size
MAX_HEAD = 16 * 1024         # request line + headers; past this the client is not speaking HTTP
USERS: dict[str, set["Conn"]] = {}
_ids = itertools.count(1)    # unique enough: nothing is stored


def now_iso() -> str:
    # The same format NotiSync's protocol.iso() writes, so each peer pays the same.
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def http_response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    # Connection: close keeps the HTTP side trivial: one request per connection.
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


def error_frame(code: str, message: str, frame_id: Any) -> bytes:
    data: dict[str, Any] = {"code": code, "message": message}
    if frame_id is not None:
        data["id"] = frame_id
    return server_frame(orjson.dumps({"type": "error", "data": data, "timestamp": now_iso()}))


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.reader: FrameReader | None = None   # set once upgraded
        self.user = ""
        self.device_id = ""
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        peers = USERS.get(self.user)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del USERS[self.user]

    def data_received(self, data: bytes) -> None:
        if self.reader is not None:
            self._frames(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._reject("431 Request Header Fields Too Large")
            return
        rest = bytes(self.head[end + 4:])
        self._request(bytes(self.head[:end]))
        self.head = bytearray()
        if self.reader is not None and rest:
            self._frames(rest)

    # -- HTTP ------------------------------------------------------------------
    def _request(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return self._reject("400 Bad Request")
        method, target, _version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        upgrade = "websocket" in headers.get("upgrade", "").lower()
        if method == "GET" and url.path == "/health" and not upgrade:
            body = orjson.dumps({"status": "ok", "connections": sum(len(s) for s in USERS.values())})
            return self._reject("200 OK", body)
        if url.path != "/ws":
            return self._reject("404 Not Found")
        key = headers.get("sec-websocket-key")
        if method != "GET" or not upgrade or not key:
            return self._reject("400 Bad Request")
        query = parse_qs(url.query)
        user = query.get("user", [""])[0]
        if not user:
            return self._reject("400 Bad Request")
        self.user, self.device_id = user, query.get("device_id", [""])[0]
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n")
        self.reader = FrameReader(MAX_MESSAGE)
        USERS.setdefault(user, set()).add(self)

    def _reject(self, status: str, body: bytes = b"") -> None:
        assert self.transport is not None
        self.transport.write(http_response(status, body))
        self.transport.close()

    # -- WebSocket -------------------------------------------------------------
    def _frames(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)  # type: ignore[union-attr]
        except ValueError:
            return self.close(1009, "message too big")
        for opcode, payload in frames:
            if self.closing:
                return
            if opcode == OP_TEXT or opcode == OP_BINARY:
                self._message(payload)
            elif opcode == OP_PING:
                self.transport.write(server_frame(payload, OP_PONG))  # type: ignore[union-attr]
            elif opcode == OP_CLOSE:
                # Echo the client's status code (RFC 6455 5.5.1), then hang up.
                self.close(struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)

    def close(self, code: int | None, reason: str = "") -> None:
        if self.closing or self.transport is None:
            return
        self.closing = True
        body = b"" if code is None else struct.pack("!H", code) + reason.encode()
        self.transport.write(server_frame(body, OP_CLOSE))
        self.transport.close()  # flushes what is buffered first

    def _message(self, message: bytes) -> None:
        write = self.transport.write  # type: ignore[union-attr]
        try:
            envelope = orjson.loads(message)
            if not isinstance(envelope, dict):
                raise ValueError("frame must be a JSON object")
        except ValueError:
            return write(error_frame("invalid_json", "frame is not valid JSON", None))
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
            frame = server_frame(orjson.dumps(payload))  # built once, written to every socket
            for other in USERS.get(self.user, ()):
                if other is not self and not other.closing:
                    other.transport.write(frame)  # type: ignore[union-attr]
            write(server_frame(orjson.dumps({"type": "ack", "timestamp": stamp,
                                             "data": {"id": frame_id, "notification_id": nid}})))
        elif kind == "ping":
            stamp = now_iso()
            write(server_frame(orjson.dumps({"type": "pong", "data": {"timestamp": stamp}, "timestamp": stamp})))
        else:
            write(error_frame("invalid_frame", f"unknown or malformed frame {kind!r}", frame_id))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()
    for conn in [c for peers in USERS.values() for c in peers]:
        conn.close(1001, "server shutting down")
    # transport.close() flushes asynchronously; let the close frames leave.
    deadline = loop.time() + 1.0
    while USERS and loop.time() < deadline:
        await asyncio.sleep(0.02)


def main() -> int:
    parser = peer_cli.parser(__doc__)
    args = parser.parse_args()
    return peer_cli.run(args, lambda: serve(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
