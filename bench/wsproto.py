"""A minimal RFC 6455 codec for the benchmark: the bare asyncio server and the load generator.

Both sides of the benchmark need WebSocket framing at the lowest Python cost
there is: the bare server is meant to be the platform's ceiling, and the
generator must stay cheaper than any server it measures. So no library, no
extensions, no fragmentation on send; text, binary, ping, pong and close.
"""
from __future__ import annotations

import base64
import hashlib
import os
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: str | bytes) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key."""
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest()).decode()


def _header(opcode: int, length: int, masked: bool) -> bytes:
    first = 0x80 | opcode  # FIN + opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first, mask_bit | length)
    if length < 65536:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def server_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """An unmasked frame (server to client). Encode once, write to every socket."""
    return _header(opcode, len(payload), False) + payload


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key, done as one big-int operation instead of a Python loop."""
    n = len(payload)
    if not n:
        return payload
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A masked frame (client to server), as RFC 6455 requires of clients."""
    key = os.urandom(4)
    return _header(opcode, len(payload), True) + key + mask(payload, key)


class FrameReader:
    """Incremental decoder: feed bytes, get back complete (opcode, payload) frames.

    Fragmented messages are reassembled. Masked payloads are unmasked, so the
    same reader serves both ends. `max_size` bounds one message.
    """

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.buf = bytearray()
        self.max_size = max_size
        self._fragments: list[bytes] = []
        self._fragment_op = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        buf = self.buf
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if length > self.max_size:
                raise ValueError(f"frame of {length} bytes is over the {self.max_size} limit")
            masked = b1 & 0x80
            if masked:
                head += 4
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head:pos + head + length])
            if masked:
                payload = mask(payload, bytes(buf[pos + head - 4:pos + head]))
            pos += head + length
            self._collect(b0, payload, out)
        if pos:
            del buf[:pos]
        return out

    def _collect(self, b0: int, payload: bytes, out: list[tuple[int, bytes]]) -> None:
        opcode, fin = b0 & 0x0F, b0 & 0x80
        if opcode >= OP_CLOSE:  # control frames may arrive between fragments
            out.append((opcode, payload))
        elif opcode == OP_CONT:
            self._fragments.append(payload)
            if fin:
                out.append((self._fragment_op, b"".join(self._fragments)))
                self._fragments = []
        elif fin:
            out.append((opcode, payload))
        else:
            self._fragment_op, self._fragments = opcode, [payload]
