"""Packing Redis commands without redis-py's per-argument re-join.

redis-py's ``pack_command`` builds each command by joining the whole buffer
so far with every argument (``buff = b"".join((buff, ...))``), and runs its
generic encoder on each one. A fan-out script call has 20 to 30 arguments,
and at saturation packing them was the largest single item in the node's
profile (11 % of the event loop, ``bench/compare.py --case independent``).
Here hiredis's C packer does it, the one redis-py's own synchronous client
uses (``HiredisRespSerializer``; its asyncio connection has no such switch):
4 µs for a four-device fan-out call where the Python loop below took 18 and
redis-py's own 33. What hiredis does not take (bytearray; bool, None and
other types, which the encoder refuses with redis-py's DataError) goes the
Python way: pieces collected and joined once, bytes and str past the
encoder's type checks. The bytes on the wire are the same either way
(tests/test_resp_pack.py).

Applied by swapping a pool's connection class for a subclass
(``pack_faster``): the library's own extension point, whatever the class
(TCP, unix socket, TLS, Sentinel-managed).
"""
from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool

try:  # redis[hiredis] installs it; without it every command takes the Python path
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency
    _hiredis_pack = None
_UTF8 = ("utf-8", "utf8", "UTF-8")


class FastPack:
    """Mixed in before a redis-py connection class."""

    encoder: Any
    _buffer_cutoff: int

    def pack_command(self, *args: Any) -> list[Any]:
        first = args[0]
        # As redis-py: a command name with spaces ("CONFIG GET") is several words.
        if isinstance(first, str):
            args = tuple(first.encode().split()) + args[1:]
        elif b" " in first:
            args = tuple(first.split()) + args[1:]
        # hiredis encodes str as UTF-8 only: a client made with another encoding packs below.
        if _hiredis_pack is not None and self.encoder.encoding in _UTF8:
            try:
                return [_hiredis_pack(args)]
            except TypeError:  # a type hiredis does not pack: the encoder decides below
                pass
        encoder = self.encoder
        encoding, errors = encoder.encoding, encoder.encoding_errors
        cutoff = self._buffer_cutoff
        pieces: list[bytes] = [b"*%d\r\n" % len(args)]
        output: list[Any] = []
        for arg in args:
            kind = type(arg)
            if kind is str:
                arg = arg.encode(encoding, errors)
            elif kind is not bytes:
                arg = encoder.encode(arg)  # numbers, and its errors for what it cannot send
            size = len(arg)
            if size > cutoff or isinstance(arg, memoryview):
                # Large values go out as their own chunk, as redis-py sends them.
                pieces.append(b"$%d\r\n" % size)
                output.append(b"".join(pieces))
                output.append(arg)
                pieces = [b"\r\n"]
            else:
                pieces.append(b"$%d\r\n%b\r\n" % (size, arg))
        output.append(b"".join(pieces))
        return output


_classes: dict[type, type] = {}


def fast_class(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    if issubclass(cls, FastPack):
        return cls
    if cls not in _classes:
        _classes[cls] = type(f"FastPack{cls.__name__}", (FastPack, cls), {})
    return _classes[cls]


def pack_faster(pool: ConnectionPool) -> ConnectionPool:
    """Make the connections ``pool`` opens from now on pack commands with ``FastPack``."""
    pool.connection_class = fast_class(pool.connection_class)
    return pool
