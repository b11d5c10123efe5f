"""A WebSocket client on a bare socket, for tests that need to control reading.

Library clients read everything the kernel holds into their own queues (and
answer pings) whether or not the application reads; this one reads a frame
only when asked, answers a ping only when it reaches it, and can crash the
way a process does: a TCP reset, with whatever was unread lost.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, size: int | None = None) -> bytes:
    """A masked client frame; ``size`` claims another payload length than the one given."""
    size = len(payload) if size is None else size
    first = (0x80 if fin else 0) | rsv | opcode
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, size)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWS:
    def __init__(self, port: int, query: str, timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET /ws?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        self._buf = b""
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        head, self._buf = self._buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        self.pings_answered = 0

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self._buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _frame(self) -> tuple[int, bytes]:
        b0, b1 = self._take(2)
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._take(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._take(8))[0]
        return b0 & 0x0F, self._take(size)

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(client_frame(opcode, payload))

    def frame(self) -> tuple[int, bytes]:
        """The next frame as it comes (opcode, payload): no ping is answered."""
        return self._frame()

    def send_json(self, value: Any) -> None:
        self.send(0x1, json.dumps(value).encode())

    def recv_json(self) -> dict[str, Any]:
        """The next text frame; pings met on the way are answered, as any client library does."""
        while True:
            opcode, payload = self._frame()
            if opcode == 0x9:
                self.send(0xA, payload)
                self.pings_answered += 1
            elif opcode == 0x1:
                return json.loads(payload)
            elif opcode == 0x8:
                raise ConnectionError(f"closed by the server: {payload!r}")

    def crash(self) -> None:
        """Die like a killed process: reset the connection, unread data and all."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
