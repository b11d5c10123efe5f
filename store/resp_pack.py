"""Packing Redis commands without redis-py's per-argument re-join.

redis-py's ``pack_command`` builds each command by joining the whole buffer
so far with every argument (``buff = b"".join((buff, ...))``), and runs its
generic encoder on each one. A fan-out script call has 20 to 30 arguments,
and at saturation packing them was the largest single item in the node's
profile (11 % of the event loop, ``bench/compare.py --case independent``).
Here the pieces are collected and joined once, and bytes and str skip the
encoder's type checks. The bytes on the wire are the same (tests/test_resp_pack.py).

Applied by swapping a pool's connection class for a subclass
(``pack_faster``): the library's own extension point, whatever the class
(TCP, unix socket, TLS, Sentinel-managed).
"""
from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool


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
