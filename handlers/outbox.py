"""Per-socket write coalescing: the frames one loop turn produces leave in one write.

At saturation a receiver gets several frames per loop turn (one Redis
pipeline resolves many users' fan-outs at once). Written one by one, each
frame cost a Tornado write, a future and a ``send()`` syscall: about a third
of the event loop's time in the profile. Queued here and written together
when the turn ends, they cost one. No frame waits longer than that turn.

Nothing may be counted as delivered before it reached the socket's stream:
while frames wait here, ``Subscriber.unsent`` holds the stream cursor from
before the first of them, so a socket dropped in between resumes there.
A position probe (``notisync/delivery/positions.py``) rides in the same
write, right behind the frames it confirms.

The RFC 6455 framing that lets us skip Tornado's per-frame path is sealed
in this module (``write_frames``); everything else goes through Tornado.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import struct
from typing import Callable

from tornado.iostream import IOStream, StreamClosedError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from notisync.delivery.subscriber import Subscriber
from notisync.hooks import hooks

log = logging.getLogger(__name__)

FIN_TEXT = 0x81  # RFC 6455 5.2: FIN bit + opcode 1 (text)
FIN_PING = 0x89  # FIN bit + opcode 9 (ping); a control frame's payload is < 126 bytes

# Writes text frames and an optional ping behind them; returns the stream's
# write future, or None when the kernel took everything.
Write = Callable[[list[bytes], "bytes | None"], "asyncio.Future[None] | None"]


class _FlushRound:
    """The outboxes that got frames this loop turn, flushed by ONE callback at its end.

    A fan-out to four sockets scheduled four callbacks (a Handle each, and
    the loop's bookkeeping for each); the loop machinery was the largest
    single share of a profile at 500 notifications/s. Frames still wait one
    turn at most, as before.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._due: list[Outbox] = []

    def add(self, outbox: "Outbox") -> None:
        if not self._due:
            self.loop.call_soon(self._run)
        self._due.append(outbox)

    def _run(self) -> None:
        due, self._due = self._due, []
        for outbox in due:
            outbox.flush()  # never raises: a failed write marks that outbox broken


_round: _FlushRound | None = None


def _flush_round() -> _FlushRound:
    global _round
    loop = asyncio.get_running_loop()
    if _round is None or _round.loop is not loop:  # one per loop (tests run several, one after another)
        _round = _FlushRound(loop)
    return _round


def encode_text_frames(payloads: list[bytes]) -> bytes:
    """Server-to-client text frames (unmasked, uncompressed), back to back."""
    parts: list[bytes] = []
    for payload in payloads:
        size = len(payload)
        if size < 126:
            parts.append(bytes((FIN_TEXT, size)))
        elif size < 1 << 16:
            parts.append(struct.pack("!BBH", FIN_TEXT, 126, size))
        else:
            parts.append(struct.pack("!BBQ", FIN_TEXT, 127, size))
        parts.append(payload)
    return b"".join(parts)


def write_frames(handler: WebSocketHandler, frames: list[bytes], ping: bytes | None) -> asyncio.Future[None] | None:
    """Text frames (and a ping behind them) in one write; the stream's future, or None if all sent.

    Tornado's write_message costs a coroutine, a Task and a syscall per
    frame. The frames are built here (RFC 6455, server frames are
    unmasked) and written to the connection's socket at once. Should a
    Tornado release drop ``stream``, or compression be on, we fall back.
    """
    conn = handler.ws_connection
    if conn is None or conn.is_closing():
        raise WebSocketClosedError()
    stream = getattr(conn, "stream", None)
    if stream is None or getattr(conn, "_compressor", True) is not None:
        written = None
        for frame in frames:
            written = handler.write_message(frame)
        if ping is not None:
            handler.ping(ping)
        return written
    data = encode_text_frames(frames)
    if ping is not None:
        data += bytes((FIN_PING, len(ping))) + ping
    return write_through(stream, data)


def write_through(stream: IOStream, data: bytes) -> asyncio.Future[None] | None:
    """Write ``data`` to the stream's socket now; None if the kernel took it all.

    ``IOStream.write`` spends a future, a queue entry and its buffer
    bookkeeping on every call, though the kernel nearly always takes the
    whole write at once. With nothing buffered ahead of us (so order
    holds) we call ``send`` ourselves and hand the stream only what is
    left. Errors go to the stream too, so it closes itself as usual. Only
    for a plain ``IOStream``: a TLS stream has its own send protocol.
    """
    if type(stream) is IOStream and not stream.writing() and not stream.closed():
        try:
            sent = stream.socket.send(data)
        except OSError:  # EAGAIN, or a reset the stream's own write will meet and handle
            sent = 0
        if sent == len(data):
            return None
        data = data[sent:]
    return stream.write(data)


class Outbox:
    """Frames queued for one socket during this loop turn.

    Two bounds on how far a socket may fall behind, counting frames queued
    here and frames handed to the stream but not yet taken by the kernel:
    ``limit`` frames and ``byte_limit`` bytes. Bytes are what cost memory
    (a frame may be 64 KiB: 5,000 of them were ~320 MB per socket); the
    frame count stays as a cheap second bound on the per-frame bookkeeping
    (list slots, write callbacks) that tiny frames cost beyond their bytes.
    """

    # One per socket: slots keep 10,000 idle sockets' outboxes small.
    __slots__ = ("_write", "_state", "_limit", "_frames", "in_flight", "broken", "_probe",
                 "_byte_limit", "_queued_bytes", "in_flight_bytes", "_room")

    def __init__(self, write: Write, state: Subscriber, limit: int,
                 probe: Callable[[Subscriber], bytes | None] | None = None, byte_limit: int = 0) -> None:
        self._write = write
        self._state = state
        self._limit = limit
        self._probe = probe  # the ping token to write behind this flush's frames, if any
        self._frames: list[bytes] = []
        self.in_flight = 0  # frames handed to the stream, not yet in the kernel
        self.broken = False  # the stream refused a write: the socket is going
        self._byte_limit = byte_limit  # 0: frames only
        self._queued_bytes = 0
        self.in_flight_bytes = 0
        self._room: asyncio.Future[None] | None = None  # a replay waiting for the backlog to halve

    @property
    def backlog(self) -> int:
        return self.in_flight + len(self._frames)

    @property
    def backlog_bytes(self) -> int:
        return self.in_flight_bytes + self._queued_bytes

    @property
    def crowded(self) -> bool:
        """Half the byte limit is used: a replay should wait (``room``) before queueing more."""
        return bool(self._byte_limit) and self.backlog_bytes >= self._byte_limit // 2

    def put(self, frame: bytes) -> bool:
        """Queue a frame; False if the socket is broken or past either limit."""
        if self.broken or self.backlog >= self._limit:
            return False
        # A frame alone may exceed a tiny limit: it still goes, or it never could.
        if self._byte_limit and self.backlog_bytes and self.backlog_bytes + len(frame) > self._byte_limit:
            return False
        if not self._frames:
            # The caller advances the cursor after this returns: remember where it was.
            self._state.unsent = self._state.cursor
            _flush_round().add(self)
        self._frames.append(frame)
        self._queued_bytes += len(frame)
        return True

    async def room(self, timeout: float) -> bool:
        """Write what is queued, then wait until the backlog is under half the byte limit.

        A replay reads 500 entries at a time: without waiting, a stream of
        large notifications would exceed the limit within one loop turn
        even for a client that reads fast, and close it on every reconnect.
        False if the backlog did not drain that far within ``timeout``
        seconds (the client is not reading) or the socket broke.
        """
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.crowded and not self.broken:
            if self._room is None or self._room.done():
                self._room = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._room), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return False
        return not self.broken

    def _wake(self) -> None:
        if self._room is not None and not self._room.done() and (self.broken or not self.crowded):
            self._room.set_result(None)

    def flush(self) -> None:
        """Hand every queued frame to the stream in one write (idempotent)."""
        frames = self._frames
        if not frames or self.broken:
            return
        try:
            written = self._write(frames, self._probe(self._state) if self._probe is not None else None)
        except (WebSocketClosedError, StreamClosedError):
            self.broken = True  # frames stay queued: drop() rewinds past them
            return
        except Exception:  # never leave frames stuck behind a flush that will not come
            log.exception("writing to a socket failed")
            self.broken = True
            return
        if written is not None and written.done() and (written.cancelled() or written.exception() is not None):
            self.broken = True
            return
        size = self._queued_bytes
        self._frames = []
        self._queued_bytes = 0
        self._state.unsent = None
        hooks.frames_written(len(frames))
        if written is not None and not written.done():
            self.in_flight += len(frames)
            self.in_flight_bytes += size
            written.add_done_callback(functools.partial(self._written, len(frames), size))

    def _written(self, count: int, size: int, future: asyncio.Future[None]) -> None:
        self.in_flight -= count
        self.in_flight_bytes -= size
        if not future.cancelled():
            future.exception()  # consume a closed-stream error; on_close handles it
        self._wake()

    def drop(self) -> None:
        """The socket is gone: forget what never reached it, and rewind the cursor past it."""
        self.broken = True
        if self._frames and self._state.unsent is not None:
            self._state.cursor = self._state.unsent
        self._frames = []
        self._queued_bytes = 0
        self._state.unsent = None
        self._wake()
