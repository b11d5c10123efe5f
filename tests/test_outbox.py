"""Write coalescing per socket (handlers/outbox.py): one write per loop turn, nothing counted early."""
from __future__ import annotations

import asyncio
import socket

from tornado.iostream import IOStream, StreamClosedError

from handlers.outbox import Outbox, encode_text_frames, write_through
from notisync.delivery.subscriber import Subscriber


class Stream:
    """Stands in for the socket's stream: records writes, can hold them or fail."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.closed = False
        self.hold: asyncio.Future[None] | None = None

    def write(self, frames: list[bytes], ping: bytes | None = None) -> asyncio.Future[None]:
        if self.closed:
            raise StreamClosedError()
        self.writes.append(list(frames))
        if self.hold is not None:
            return self.hold
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def deliver(outbox: Outbox, state: Subscriber, entry_id: str) -> None:
    """What Delivery does per stream entry: send, then advance the cursor."""
    assert outbox.put(f"frame {entry_id}".encode())
    state.cursor = entry_id


async def test_frames_of_one_turn_leave_in_one_write_in_order():
    stream, state = Stream(), Subscriber(cursor="1-0")
    outbox = Outbox(stream.write, state, limit=100)
    for i in range(2, 6):
        deliver(outbox, state, f"{i}-0")
    assert stream.writes == []  # nothing written before the turn ends
    assert state.unsent == "1-0"
    await asyncio.sleep(0)
    assert stream.writes == [[b"frame 2-0", b"frame 3-0", b"frame 4-0", b"frame 5-0"]]
    assert state.unsent is None and state.cursor == "5-0"
    deliver(outbox, state, "6-0")
    await asyncio.sleep(0)
    assert stream.writes[1:] == [[b"frame 6-0"]]


async def test_socket_dropped_before_the_write_rewinds_the_cursor():
    stream, state = Stream(), Subscriber(cursor="1-0")
    outbox = Outbox(stream.write, state, limit=100)
    deliver(outbox, state, "2-0")
    deliver(outbox, state, "3-0")
    outbox.drop()  # the client vanished in the same turn
    await asyncio.sleep(0)
    assert stream.writes == []
    assert state.cursor == "1-0" and state.unsent is None  # resumes with 2-0
    assert not outbox.put(b"late")


async def test_stream_refusing_the_write_keeps_the_frames_unsent():
    stream, state = Stream(), Subscriber(cursor="1-0")
    outbox = Outbox(stream.write, state, limit=100)
    deliver(outbox, state, "2-0")
    stream.closed = True
    await asyncio.sleep(0)
    assert outbox.broken and not outbox.put(b"more")
    outbox.drop()
    assert state.cursor == "1-0"


async def test_frames_already_written_are_not_rewound():
    stream, state = Stream(), Subscriber(cursor="1-0")
    outbox = Outbox(stream.write, state, limit=100)
    deliver(outbox, state, "2-0")
    await asyncio.sleep(0)
    deliver(outbox, state, "3-0")
    outbox.drop()
    assert state.cursor == "2-0"


async def test_backlog_counts_frames_the_kernel_has_not_taken_and_is_bounded():
    stream, state = Stream(), Subscriber()
    stream.hold = asyncio.get_running_loop().create_future()  # a client that stopped reading
    outbox = Outbox(stream.write, state, limit=5)
    for i in range(3):
        assert outbox.put(b"x")
    await asyncio.sleep(0)
    assert outbox.backlog == 3
    assert outbox.put(b"y") and outbox.put(b"y")
    assert not outbox.put(b"z")  # the sixth frame: the handler closes the socket
    stream.hold.set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert outbox.backlog == 0  # the kernel took all five
    assert outbox.put(b"z")


async def test_flush_is_idempotent_and_close_path_flushes_early():
    stream, state = Stream(), Subscriber()
    outbox = Outbox(stream.write, state, limit=100)
    outbox.put(b"bye")
    outbox.flush()  # what the handler's close() does before the close frame
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert stream.writes == [[b"bye"]]


def test_frame_headers_follow_rfc_6455_length_forms():
    # RFC 6455 5.7's examples (as text frames): 7-bit, 16-bit and 64-bit lengths.
    assert encode_text_frames([b"Hello"]) == b"\x81\x05Hello"
    assert encode_text_frames([b"a" * 256])[:4] == b"\x81\x7e\x01\x00"
    assert encode_text_frames([b"a" * 65536])[:10] == b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    assert encode_text_frames([b"a" * 125])[:2] == b"\x81\x7d"
    assert encode_text_frames([b"a" * 65535])[:4] == b"\x81\x7e\xff\xff"
    assert encode_text_frames([b"one", b"", b"two"]) == b"\x81\x03one\x81\x00\x81\x03two"


# -- write_through, on a real socket pair --------------------------------------

def _pair() -> tuple[IOStream, socket.socket]:
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    theirs.setblocking(False)
    return IOStream(ours), theirs


async def _read_all(sock: socket.socket, size: int) -> bytes:
    got = bytearray()
    loop = asyncio.get_running_loop()
    while len(got) < size:
        got += await loop.sock_recv(sock, size - len(got))
    return bytes(got)


async def test_write_through_sends_directly_when_nothing_is_buffered():
    stream, peer = _pair()
    assert write_through(stream, b"hello") is None
    assert await _read_all(peer, 5) == b"hello"
    stream.close()
    peer.close()


async def test_write_through_keeps_order_when_the_kernel_is_full():
    stream, peer = _pair()
    first = bytes(range(256)) * 2000  # far more than both socket buffers hold
    pending = write_through(stream, first)
    assert pending is not None and not pending.done() and stream.writing()
    # The stream holds the rest of `first`: this write must queue behind it.
    second = write_through(stream, b"after")
    assert second is not None
    assert await _read_all(peer, len(first) + 5) == first + b"after"
    await asyncio.wait_for(second, 5)
    stream.close()
    peer.close()


async def test_write_through_to_a_reset_peer_closes_the_stream():
    stream, peer = _pair()
    peer.close()
    try:
        result = write_through(stream, b"x" * 100)
        if result is not None:
            await asyncio.wait_for(result, 5)
    except StreamClosedError:
        pass
    else:
        raise AssertionError("a write to a closed peer must fail")
    assert stream.closed()


async def test_an_unexpected_write_error_breaks_the_outbox_instead_of_stalling_it():
    state = Subscriber(cursor="1-0")

    def failing(frames: list[bytes], ping: bytes | None) -> None:
        raise RuntimeError("a bug, not a closed socket")

    outbox = Outbox(failing, state, limit=100)
    assert outbox.put(b"x")
    await asyncio.sleep(0)
    assert outbox.broken and not outbox.put(b"y")  # the handler closes the socket on this
    outbox.drop()
    assert state.cursor == "1-0"
