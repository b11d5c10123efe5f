"""This node's live sockets: user -> device -> connections. No I/O of its own.

The hub only indexes connections and writes already-encoded frames to the
ones it is given; the sync layer decides what goes where.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from notisync.delivery.subscriber import Connection

# The saving round (positions.py) runs one slice of the sockets per tick; the
# hub keeps them sliced (by ``Subscriber.slot``) so a tick visits only its own.
SLICES = 10


class Hub:
    # Per device, a dict used as an ordered set: oldest socket first, which is
    # the one --max-sockets-per-device replaces.
    def __init__(self) -> None:
        self._users: dict[str, dict[str, dict[Connection, None]]] = {}
        self._slices: list[dict[Connection, None]] = [{} for _ in range(SLICES)]
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def add(self, conn: Connection) -> None:
        devices = self._users.setdefault(conn.user_id, {})
        conns = devices.setdefault(conn.device_id, {})
        if conn not in conns:
            conns[conn] = None
            self._slices[conn.subscriber.slot % SLICES][conn] = None
            self._count += 1

    def remove(self, conn: Connection) -> None:
        devices = self._users.get(conn.user_id)
        if not devices or conn not in devices.get(conn.device_id, ()):
            return
        del devices[conn.device_id][conn]
        del self._slices[conn.subscriber.slot % SLICES][conn]
        self._count -= 1
        if not devices[conn.device_id]:
            del devices[conn.device_id]
        if not devices:
            del self._users[conn.user_id]

    def device_connections(self, user_id: str, device_id: str) -> list[Connection]:
        return list(self._users.get(user_id, {}).get(device_id, ()))

    def beyond(self, user_id: str, device_id: str, limit: int) -> list[Connection]:
        """The device's oldest sockets past the newest ``limit`` (none if ``limit`` is 0)."""
        conns = list(self._users.get(user_id, {}).get(device_id, ()))
        return conns[:-limit] if limit and len(conns) > limit else []

    def user_devices(self, user_id: str) -> dict[str, dict[Connection, None]]:
        return self._users.get(user_id, {})

    def user_connections(self, user_id: str, exclude_device: str | None = None) -> list[Connection]:
        return [
            c
            for device_id, conns in self._users.get(user_id, {}).items()
            if device_id != exclude_device
            for c in conns
        ]

    def slice(self, index: int) -> list[Connection]:
        """The sockets of slice ``index`` (0 to SLICES - 1): each socket is in exactly one."""
        return list(self._slices[index])

    def all(self) -> Iterator[Connection]:
        for devices in list(self._users.values()):
            for conns in list(devices.values()):
                yield from list(conns)

    @staticmethod
    def broadcast(conns: Iterable[Connection], frame: bytes) -> int:
        """Write one frame to many sockets; a dead socket never stops the rest."""
        return sum(1 for c in conns if c.send(frame))
