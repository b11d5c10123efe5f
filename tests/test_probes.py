"""Position probes (notisync/delivery/positions.py): sockets written to together do not stay in step.

With a fixed one-second spacing, sockets that got their first frame together
(a fleet that connected at once) were probed in the same loop turn every
second from then on, and each burst of hundreds of pongs held up live
deliveries.
"""
from __future__ import annotations

from typing import Any

from notisync.delivery import positions
from notisync.delivery.hub import SLICES, Hub
from notisync.delivery.positions import Positions
from notisync.delivery.subscriber import Subscriber

SOCKETS = 200


def probes_over(pos: Positions, subs: list[Subscriber], now: list[float], seconds: float, step: float,
                times: dict[int, list[float]]) -> list[int]:
    """Write to every socket each ``step`` for ``seconds``, answering each probe at once;
    how many probes each step carried (and when each socket got one, in ``times``)."""
    counts = []
    for _ in range(round(seconds / step)):
        now[0] += step
        n = 0
        for i, s in enumerate(subs):
            s.cursor = "%d-0" % (int(s.cursor.split("-")[0]) + 1)
            if pos.for_write(s) is not None:
                n += 1
                times.setdefault(i, []).append(now[0])
                pos.pong(s, s.probe_token)
                assert s.confirmed == s.cursor
        counts.append(n)
    return counts


def test_sockets_written_together_are_probed_at_once_then_drift_apart() -> None:
    now = [1000.0]
    pos = Positions(hub=Any, streams=Any, clock=lambda: now[0])  # type: ignore[arg-type]
    subs = [Subscriber(cursor="5-0") for _ in range(SOCKETS)]
    # A socket's first frame is confirmed at once: every socket's first write carries a probe.
    tokens = [pos.for_write(s) for s in subs]
    assert all(tokens) and len(set(tokens)) == SOCKETS
    for s in subs:
        pos.pong(s, s.probe_token)
    assert all(s.confirmed == "5-0" for s in subs)
    # Written to every 50 ms from then on: one probe per socket every 0.75 to 1.25 x
    # PROBE_INTERVAL, and no step carries the probes of most of them.
    step = positions.PROBE_INTERVAL / 20
    times: dict[int, list[float]] = {i: [now[0]] for i in range(SOCKETS)}
    counts = probes_over(pos, subs, now, positions.PROBE_INTERVAL * 8, step, times)
    assert max(counts[20:]) <= SOCKETS * 0.2, counts  # about SOCKETS / 20 per step once spread
    for i, at in times.items():
        gaps = [b - a for a, b in zip(at, at[1:])]
        assert len(gaps) >= 6 and all(positions.PROBE_INTERVAL * 0.75 - 1e-6 <= g <= positions.PROBE_INTERVAL * 1.25 + step
                                      for g in gaps), (i, gaps)


class _Conn:
    def __init__(self, i: int) -> None:
        self.user_id, self.device_id = f"u{i // 4}", f"d{i}"
        self.subscriber = Subscriber(cursor="1-0", confirmed="0-0", saved="0-0")
        self.probed = 0

    def probe(self, token: bytes) -> bool:
        self.probed += 1
        return True


class _Streams:
    def __init__(self) -> None:
        self.calls: list[int] = []

    async def save_cursors(self, cursors: dict[str, Any]) -> None:
        self.calls.append(sum(len(devices) for _, devices in cursors.values()))


async def test_the_saving_round_is_spread_over_the_second_in_slices() -> None:
    """One round over every socket each second held the loop 6-14 ms and Redis ~10 ms with 1,000
    sockets (a delivery-latency spike every second, bench/results/2026-11-30-reader.md); each
    tick now takes one slice, and every socket is still probed and saved once per round."""
    now = [1000.0]
    conns = [_Conn(i) for i in range(SOCKETS)]
    streams = _Streams()
    hub = Hub()
    for c in conns:
        hub.add(c)  # type: ignore[arg-type]
    pos = Positions(hub=hub, streams=streams, clock=lambda: now[0])  # type: ignore[arg-type]
    probed_per_tick = []
    for _ in range(SLICES):
        before = sum(c.probed for c in conns)
        await pos.tick()
        probed_per_tick.append(sum(c.probed for c in conns) - before)
    assert all(c.probed == 1 for c in conns)  # each socket once over the round
    assert max(probed_per_tick) <= SOCKETS * 2 / SLICES, probed_per_tick
    for c in conns:  # answered: the next round saves each confirmed position, again a slice a tick
        pos.pong(c.subscriber, c.subscriber.probe_token)
    streams.calls.clear()
    for _ in range(SLICES):
        await pos.tick()
    assert sum(streams.calls) == SOCKETS and max(streams.calls) <= SOCKETS * 2 / SLICES, streams.calls
    assert all(c.subscriber.saved == "1-0" for c in conns)


def test_the_hub_keeps_every_socket_in_exactly_one_slice_until_it_is_removed() -> None:
    hub, conns = Hub(), [_Conn(i) for i in range(37)]
    for c in conns:
        hub.add(c)  # type: ignore[arg-type]
    slices = [hub.slice(i) for i in range(SLICES)]
    assert sorted(id(c) for s in slices for c in s) == sorted(id(c) for c in conns)
    assert max(map(len, slices)) - min(map(len, slices)) <= 1  # slots are dealt in turn
    for c in conns[::2]:
        hub.remove(c)  # type: ignore[arg-type]
    left = [c for i in range(SLICES) for c in hub.slice(i)]
    assert sorted(id(c) for c in left) == sorted(id(c) for c in conns[1::2]) and hub.count == len(left)
