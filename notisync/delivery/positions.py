"""How far each device's client got: probes, acknowledgements, and the saved position.

A device's saved position (where a socket that connects without ``last_id``
resumes) only ever counts what the client confirmed, never what the node
merely wrote: a frame in the node's buffers, the kernel's or the client
library's queue is not yet delivered, and a client that crashes loses it.

- A **probe** is a WebSocket ping written behind the frames; a client
  answers pings in order as it reads, so the pong proves it read every
  frame before the ping. One probe in flight per socket, and after it none
  for about a second: written in the same write as the frames once that
  time is up (``for_write``), else by the next saving round. A socket that
  gets a frame now and then has each one confirmed at once; a busy one
  costs one ping a second. The spacing is drawn at random per probe
  (``PROBE_INTERVAL`` x 0.75 to 1.25): with a fixed second, sockets that
  got traffic together stayed in step, every saving round probed most of
  them in one loop turn, and their pongs, hundreds at once, held up live
  deliveries for 50-100 ms once a second (the latency spikes of
  ``bench/compare.py --case independent``).
- A client may instead send ``stream_ack`` ``{last_id}`` as it handles its
  frames; from then on only its acks move the position.
"""
from __future__ import annotations

import random
import time
from typing import Callable

from notisync.delivery.hub import SLICES, Hub
from notisync.delivery.subscriber import Connection, Subscriber
from notisync.errors import BadRequest
from store.streams import ZERO, Streams, is_stream_id, parse_id

# Seconds between a socket's probes, on average (each drawn from 0.75x to 1.25x).
PROBE_INTERVAL = 1.0
# The saving round (each ROUND_SECONDS) runs as SLICES ticks, each over one
# slice of the sockets (the hub keeps them sliced): in one piece it held the
# loop 6-14 ms and Redis ~10 ms with 1,000 busy sockets, a delivery-latency
# spike every second.
ROUND_SECONDS = 1.0
TICK_SECONDS = ROUND_SECONDS / SLICES


class Positions:
    def __init__(self, hub: Hub, streams: Streams, clock: Callable[[], float] = time.monotonic) -> None:
        self.hub = hub
        self.streams = streams
        self.clock = clock  # the loop's clock, without get_running_loop's pid check per write
        self._probes = 0
        self._slice = 0

    def for_write(self, sub: Subscriber) -> bytes | None:
        """A probe token to write right behind the frames being written now (up to ``sub.cursor``), or None."""
        return self._next_probe(sub, sub.cursor)

    def pong(self, sub: Subscriber, data: bytes) -> None:
        if sub.probe_at is not None and data == sub.probe_token:
            sub.confirmed = max(sub.confirmed, sub.probe_at, key=parse_id)
            sub.probe_at = None

    def stream_ack(self, sub: Subscriber, last_id: str) -> None:
        """The client handled its stream up to ``last_id``: from now on only its acks count.

        An id from another epoch, not a stream id, or past what this socket
        was sent is refused (it would skip entries the client never got).
        """
        epoch, sep, stream_id = last_id.partition(":")
        if not sep or epoch != sub.epoch or not is_stream_id(stream_id):
            raise BadRequest("last_id is not a stream id of this server", code="invalid_last_id")
        if parse_id(stream_id) > parse_id(sub.cursor):
            raise BadRequest("last_id is past what this socket was sent", code="invalid_last_id")
        sub.acking = True
        sub.probe_at = None
        sub.confirmed = max(sub.confirmed, stream_id, key=parse_id)

    async def tick(self) -> None:
        """Every TICK_SECONDS: the next slice of the saving round."""
        self._slice = (self._slice + 1) % SLICES
        await self.save(self._slice)

    async def save(self, slice_: int | None = None) -> None:
        """Probe sockets whose stream moved on, and persist what clients confirmed: one slice, or all."""
        cursors: dict[str, tuple[str, dict[str, str]]] = {}  # user -> (epoch, device -> id)
        for conn in self.hub.all() if slice_ is None else self.hub.slice(slice_):
            sub = conn.subscriber
            self._probe(conn, sub)
            if sub.confirmed != sub.saved:
                epoch, devices = cursors.setdefault(conn.user_id, (sub.epoch, {}))
                if epoch == sub.epoch:  # (sockets of one user differ only mid-resync: the next round saves it)
                    devices[conn.device_id] = max(devices.get(conn.device_id, ZERO), sub.confirmed, key=parse_id)
                    sub.saved = sub.confirmed
        await self.streams.save_cursors(cursors)

    def _probe(self, conn: Connection, sub: Subscriber) -> None:
        token = self._next_probe(sub, sub.written)
        if token is not None and not conn.probe(token):
            sub.probe_at = None

    def _next_probe(self, sub: Subscriber, position: str) -> bytes | None:
        if sub.acking or sub.probe_at is not None or position == sub.confirmed:
            return None
        now = self.clock()
        if now < sub.probe_due:
            return None  # the saving round once it is due sends it
        sub.probe_due = now + PROBE_INTERVAL * (0.75 + 0.5 * random.random())
        self._probes += 1
        sub.probe_at, sub.probe_token = position, b"p%d" % self._probes
        return sub.probe_token
