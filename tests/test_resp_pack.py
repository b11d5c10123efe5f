"""store/resp_pack.py: the same bytes as redis-py's own packing, for every kind of argument."""
from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from store.resp_pack import fast_class

CASES = [
    ("GET", "k"),
    ("EVALSHA", "a" * 40, 3, "notisync:u:{u1}:e", b"bytes\x00\xff", "ünïcode ✓", 0, -5, 1.5, 10**20),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"n"),
    ("SET", "big", b"x" * 70_000),  # past the buffer cutoff: sent as a chunk of its own
    ("SET", "view", memoryview(b"abc")),
    ("SET", "array", bytearray(b"abc")),
    ("PUBLISH", "c", "", b""),
]


@pytest.mark.parametrize("cls", [Connection, UnixDomainSocketConnection])
@pytest.mark.parametrize("args", CASES, ids=lambda a: str(a[0]))
def test_same_bytes_as_redis_py(cls: type, args: tuple) -> None:
    ours, theirs = fast_class(cls)(), cls()
    assert isinstance(ours, cls)
    assert b"".join(bytes(c) for c in ours.pack_command(*args)) == b"".join(bytes(c) for c in theirs.pack_command(*args))
    batch = [args, ("PING",), args]
    assert b"".join(bytes(c) for c in ours.pack_commands(batch)) == b"".join(bytes(c) for c in theirs.pack_commands(batch))


def test_a_client_with_another_encoding_packs_with_it() -> None:
    args = ("SET", "k", "café")
    ours, theirs = fast_class(Connection)(encoding="latin-1"), Connection(encoding="latin-1")
    packed = b"".join(bytes(c) for c in ours.pack_command(*args))
    assert packed == b"".join(bytes(c) for c in theirs.pack_command(*args))
    assert b"caf\xe9" in packed


@pytest.mark.parametrize("bad", [True, None, object()])
def test_what_redis_py_refuses_is_refused(bad: object) -> None:
    with pytest.raises(DataError):
        fast_class(Connection)().pack_command("SET", "k", bad)
