"""Reading client frames: Tornado's RFC 6455 protocol, one read per wake-up instead of four per frame.

Tornado's ``_receive_frame`` reads a frame in four awaits (header, length,
mask, payload). Each but the last leaves bytes in the IOStream's buffer, and
a stream with buffered bytes and no pending read drops its read interest:
every frame cost four futures and two ``epoll_ctl`` syscalls (the interest
removed, then added back for the next header). Pongs to the position probes
(``notisync/delivery/positions.py``) and phones' posts are most of what a
node reads, so this was the largest share of a profile at 500
notifications/s that Tornado spends and bare Tornado does not repeat as
often.

``FrameReader`` reads whatever arrived (``partial=True``): the stream's
buffer is left empty, its read interest stays registered, and the frames
are parsed from our own buffer. Everything a frame then does is Tornado's,
in Tornado's order: control frames through ``_handle_message`` (pong, ping,
close), and each text message's ``on_message`` awaited before the next
frame is looked at, as Tornado does. The checks are Tornado's too: reserved
bits, control frames over 125 bytes or fragmented, a continuation with
nothing to continue, and a message over ``websocket_max_message_size``
(closed with 1009 as soon as its header arrives, before its payload).
One addition: before the close reply, the handler's ``before_close_reply``
(if it has one) writes what it still holds for this turn.
With compression negotiated (NotiSync never offers it) Tornado's own loop
runs.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketProtocol13, _websocket_mask

READ_CHUNK = 64 * 1024  # what one wake-up takes from the stream at most
FIN = 0x80
RSV = 0x70
MASKED = 0x80
TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8
# A flood on one socket gives the loop back after this many bytes, as Tornado's own loop does.
YIELD_BYTES = 128 * 1024


class FrameReader(WebSocketProtocol13):
    async def _receive_frame_loop(self) -> None:
        if self._decompressor is not None:
            return await super()._receive_frame_loop()
        buffer = bytearray()
        work = 0
        try:
            while not self.client_terminated:
                chunk = await self.stream.read_bytes(READ_CHUNK, partial=True)
                self._wire_bytes_in += len(chunk)
                buffer += chunk
                used = await self._frames(buffer)
                if used:
                    del buffer[:used]
                work += len(chunk)
                if work >= YIELD_BYTES:
                    work = 0
                    await asyncio.sleep(0)
        except StreamClosedError:
            self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    async def _frames(self, buf: bytearray) -> int:
        """Handle every complete frame at the start of ``buf``; the bytes they took."""
        pos, end = 0, len(buf)
        while not self.client_terminated and end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            opcode = first & 0x0F
            if first & RSV:  # an extension we never agreed to
                self._abort()
                break
            size, head = second & 0x7F, 2
            if opcode & 0x8 and (size >= 126 or not first & FIN):
                self._abort()  # control frames are short and never fragmented
                break
            if size == 126:
                if end - pos < 4:
                    break
                size, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            fragments = self._fragmented_message_buffer
            if size + (len(fragments) if fragments is not None else 0) > self.params.max_message_size:
                self.close(1009, "message too big")
                self._abort()
                break
            mask_at = pos + head
            if second & MASKED:
                head += 4
            if end - pos < head + size:
                break  # the rest of this frame is still on its way
            data = bytes(buf[pos + head:pos + head + size])
            if second & MASKED:
                data = _websocket_mask(bytes(buf[mask_at:mask_at + 4]), data)
            pos += head + size
            message = self._assemble(first, opcode, data)
            if message is not None:
                await self._dispatch(*message)
        return pos

    def _assemble(self, first: int, opcode: int, data: bytes) -> tuple[int, bytes] | None:
        """The frame's complete message (opcode, payload), None while fragments keep coming."""
        final = first & FIN
        if opcode & 0x8:
            return opcode, data  # may come between the fragments of a message
        if opcode == 0:  # continuation
            if self._fragmented_message_buffer is None:
                self._abort()
                return None
            self._fragmented_message_buffer.extend(data)
            if not final:
                return None
            opcode, data = self._fragmented_message_opcode, bytes(self._fragmented_message_buffer)
            self._fragmented_message_buffer = None
            return opcode, data
        if self._fragmented_message_buffer is not None:  # a new message before the last one ended
            self._abort()
            return None
        if not final:
            self._fragmented_message_opcode = opcode
            self._fragmented_message_buffer = bytearray(data)
            return None
        return opcode, data

    async def _dispatch(self, opcode: int, data: bytes) -> None:
        if self.client_terminated:
            return
        if opcode == CLOSE:
            # What the handler queued this loop turn (the ack of the message
            # just before) goes out ahead of the close reply, not lost behind it.
            before_close = getattr(self.handler, "before_close_reply", None)
            if before_close is not None:
                before_close()
        if opcode not in (TEXT, BINARY):
            handled = self._handle_message(opcode, data)  # Tornado's: close, ping, pong, or abort
            if handled is not None:
                await handled
            return
        self._message_bytes_in += len(data)
        message: str | bytes = data
        if opcode == TEXT:
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError:
                self._abort()
                return
        # on_message awaited here rather than wrapped in a Task per frame
        # (Tornado's _run_callback): same order, one Task and Handle fewer.
        try:
            result: Any = self.handler.on_message(message)
            if result is not None:
                await result
        except Exception:
            self.handler.log_exception(*sys.exc_info())  # as Tornado's _run_callback does
            self._abort()
