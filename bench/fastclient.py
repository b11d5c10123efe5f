"""The load generator's WebSocket client: an asyncio Protocol on the bench codec.

Tornado's client costs tens of microseconds per frame, so a generator built
on it saturates its own core before a fast server does, and the run then
measures the generator. This client does the handshake and framing by hand
and hands each text/binary payload to a callback, nothing more.
"""
from __future__ import annotations

import asyncio
import base64
import os
from typing import Callable

from bench.wsproto import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameReader, accept_key, client_frame

MAX_HANDSHAKE = 16 * 1024
HANDSHAKE_TIMEOUT = 15.0


class HandshakeError(Exception):
    pass


class WSClient(asyncio.Protocol):
    """One client socket. `on_message(payload)` runs for every data frame, `on_close(code)` once."""

    def __init__(self, host: str, path: str, on_message: Callable[[bytes], None],
                 on_close: Callable[[int], None] | None = None) -> None:
        self.host = host
        self.path = path
        self.on_message = on_message
        self.on_close = on_close
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.transport: asyncio.Transport | None = None
        self.reader = FrameReader()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head = b""
        self.close_code: int | None = None

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        request = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        transport.write(request.encode())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            data = self._read_handshake(data)
            if not data:
                return
        try:
            frames = self.reader.feed(data)
        except ValueError:
            self._closed(1009)
            return
        for opcode, payload in frames:
            if opcode == OP_TEXT or opcode == OP_BINARY:
                self.on_message(payload)
            elif opcode == OP_PING:
                self.transport.write(client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.transport.write(client_frame(payload[:2], OP_CLOSE))
                self.transport.close()
                self._closed(code)
                return

    def _read_handshake(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HANDSHAKE:
                self._fail("handshake response too large")
            return b""
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4:]
        self._head = b""
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " " or accept_key(self.key) not in head:
            self._fail(f"no upgrade: {status}")
            return b""
        self.upgraded.set_result(None)
        return rest

    def _fail(self, reason: str) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(HandshakeError(reason))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(HandshakeError(f"connection lost during handshake: {exc!r}"))
        self._closed(1006)

    def _closed(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            if self.on_close is not None:
                self.on_close(code)

    # -- API ---------------------------------------------------------------------
    def send(self, payload: bytes) -> None:
        if self.close_code is None and self.transport is not None:
            self.transport.write(client_frame(payload))

    def close(self) -> None:
        if self.transport is not None and self.close_code is None:
            self.transport.write(client_frame((1000).to_bytes(2, "big"), OP_CLOSE))
            self.close_code = 1000
            self.transport.close()


async def connect(host: str, port: int, path: str, on_message: Callable[[bytes], None],
                  on_close: Callable[[int], None] | None = None,
                  timeout: float = HANDSHAKE_TIMEOUT) -> WSClient:
    """Open a socket and finish the handshake, or raise."""
    loop = asyncio.get_running_loop()

    async def run() -> WSClient:
        _, proto = await loop.create_connection(lambda: WSClient(host, path, on_message, on_close), host, port)
        await proto.upgraded
        return proto

    return await asyncio.wait_for(run(), timeout)
