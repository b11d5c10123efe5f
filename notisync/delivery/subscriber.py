"""One socket as the delivery engine sees it: its place in its device's stream, and how to reach it.

The engine never touches Tornado: it reaches a socket only through
``Connection`` (write an encoded frame, probe, close), which ``handlers/ws.py``
implements, and keeps what it knows about that socket in its ``Subscriber``.
"""
from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Protocol

from store.streams import ZERO

_slots = itertools.count()


@dataclass(slots=True)  # one per socket: slots keep 10,000 idle sockets small
class Subscriber:
    """A socket's position in its device's stream, and what the client confirmed of it."""

    cursor: str = ZERO  # the newest entry queued for this socket
    epoch: str = "0"  # the user's stream epoch its positions belong to (Streams.device_state)
    pumping: bool = True  # catching up from the stream: wake-ups only mark it dirty
    dirty: bool = False
    saved: str = ZERO  # the position last written to Redis for the device
    # Cursor from before frames still queued in the socket's outbox (not yet
    # handed to its stream); None when nothing waits. See handlers/outbox.py.
    unsent: str | None = None
    # The newest entry the client is known to hold: by its pong to a probe
    # sent behind the entry, or by its own stream_ack. Only this is saved.
    confirmed: str = ZERO
    probe_at: str | None = None  # position of the probe awaiting its pong
    probe_token: bytes = b""
    probe_due: float = 0.0  # loop time from which the next probe may go
    acking: bool = False  # the client sends stream_ack: pongs no longer count
    slot: int = field(default_factory=lambda: next(_slots))  # which tick of the saving round takes it
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def written(self) -> str:
        """The newest entry handed to the socket (frames still in the outbox excluded)."""
        return self.cursor if self.unsent is None else self.unsent


class Connection(Protocol):
    """The transport: what the engine may do to one socket."""

    user_id: str
    device_id: str
    conn_id: str
    session_id: str  # the sign-in it was opened with: ending that session closes it
    subscriber: Subscriber

    def send(self, frame: bytes) -> bool:
        """Queue a frame; False if the socket is closed or was dropped as too slow."""

    @property
    def crowded(self) -> bool:
        """Half the socket's outbox byte limit is in use: a replay waits (``room``)."""

    async def room(self) -> None:
        """Return once the socket's outbox has room again (or the socket is gone)."""

    def probe(self, token: bytes) -> bool:
        """Send a WebSocket ping carrying ``token`` behind every frame already written.

        The client's pong proves its WebSocket layer read everything before
        it. False if the socket is closing.
        """

    def close(self, code: int, reason: str) -> None: ...

    def abort(self) -> None:
        """Drop the socket without waiting for the client's close reply."""
