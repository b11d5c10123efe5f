"""Position probes (notisync/delivery/positions.py): sockets written to together do not stay in step.

With a fixed one-second spacing, sockets that got their first frame together
(a fleet that connected at once) were probed in the same loop turn every
second from then on, and each burst of hundreds of pongs held up live
deliveries.
"""
from __future__ import annotations

from typing import Any

from notisync.delivery import positions
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
