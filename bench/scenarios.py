"""The scenarios the generator runs against a connected Fleet. Each returns a plain dict."""
from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any, Callable

from bench.actors import Phone, Receiver
from bench.common import http, machine_sample, machine_usage, proc_sample, summarize
from bench.fleet import SEND_GUARD, Fleet


async def warmup(fleet: Fleet, drain: float) -> dict[str, Any]:
    """One notification per phone: every socket must be live before anything is measured."""
    started = time.time()
    for phone in fleet.phones:
        fleet.send(phone, "W")
    return await _settle(fleet, "W", started, drain)


async def _settle(fleet: Fleet, tag: str, started: float, drain: float) -> dict[str, Any]:
    """Sending is over: wait up to `drain` s for the last deliveries, then report."""
    sends_done = time.time()
    drained = await fleet.drain(tag, drain)
    return fleet.report(tag, started, sends_done, drained)


async def saturate(fleet: Fleet, duration: float, window: int, drain: float, tag: str,
                   on_sent: Callable[[], None] | None = None) -> dict[str, Any]:
    """Closed loop: each phone keeps `window` notifications unanswered and sends again on every answer."""
    deadline = time.time() + duration

    def again(phone: Phone, answered_tag: str) -> None:
        if answered_tag == tag and time.time() < deadline:
            fleet.send(phone, tag)

    started = time.time()
    for phone in fleet.phones:
        phone.on_answer = again
        for _ in range(window):
            fleet.send(phone, tag)
    await asyncio.sleep(max(0.0, deadline - time.time()))
    for phone in fleet.phones:
        phone.on_answer = None
    if on_sent is not None:
        on_sent()
    report = await _settle(fleet, tag, started, drain)
    report.update(window=window, per_second=fleet.per_second(tag, started, duration))
    return report


async def latency(fleet: Fleet, rate: float, duration: float, drain: float, tag: str,
                  on_sent: Callable[[], None] | None = None) -> dict[str, Any]:
    """Open loop: send i is due at t0 + i/R, whatever the answers are doing."""
    count = max(1, round(rate * duration))
    phones = fleet.phones
    lags: list[float] = []
    interval = 1.0 / rate
    started = time.time()
    sent = 0
    while sent < count and time.time() < started + duration + SEND_GUARD:
        now = time.time()
        due = min(count, int((now - started) / interval) + 1)
        for seq in range(sent, due):  # catch up in one burst if the loop was late
            lags.append(now - (started + seq * interval))
            fleet.send(phones[seq % len(phones)], tag)
        sent = due
        if sent < count:
            await asyncio.sleep(max(0.0, started + sent * interval - time.time()))
    if on_sent is not None:
        on_sent()
    report = await _settle(fleet, tag, started, drain)
    report.update(rate=rate, scheduled=count, schedule_lag_ms=summarize(lags))
    return report


async def rest_saturate(fleet: Fleet, duration: float, concurrency: int, drain: float, tag: str) -> dict[str, Any]:
    """Closed loop over REST: `concurrency` workers, each posting as soon as its last POST answered."""
    deadline = time.time() + duration
    phones = fleet.phones

    async def worker(k: int) -> None:
        for seq in itertools.count():
            if time.time() >= deadline:
                return
            await fleet.send_rest(phones[(k + seq * concurrency) % len(phones)], tag)

    started = time.time()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    report = await _settle(fleet, tag, started, drain)
    report.update(concurrency=concurrency, per_second=fleet.per_second(tag, started, duration))
    return report


async def catchup(fleet: Fleet, count: int, window: int, drain: float, tag: str) -> dict[str, Any]:
    """A device offline while `count` notifications queue for it; then time from connect to the last one.

    NotiSync only: the new device is registered but never connected, so its
    stream holds exactly what was posted after it was created.
    """
    user = fleet.users[0]
    phone = user.phone
    device_id = await fleet._new_device(user, 1)
    offline = Receiver(user, device_id, fleet.ports[-1])
    offline.order = []
    queued = _post_many(fleet, phone, tag, count, window)
    await queued
    drained = await fleet.drain(tag, drain, [user])  # the online receivers have them all: it's queued now
    t0 = time.time()
    await fleet.open(offline, resume=False)
    connected = time.time()
    accepted = phone.sent.get(tag, {})
    deadline = t0 + drain
    while len(offline.got.get(tag, ())) < len(accepted) and time.time() < deadline:
        await asyncio.sleep(0.001)
    got = offline.got.get(tag, {})
    last = offline.last.get(tag, time.time())
    offline.ws.close()
    status, _ = await http(fleet.base, "DELETE", f"/api/v1/devices/{device_id}", token=user.token)
    sequence = [int(t.partition("#")[2]) for t in offline.order]
    return {
        "tag": tag, "queued": len(accepted), "delivered": sum(1 for n in got if n in accepted),
        "missing": sum(1 for n in accepted if n not in got), "in_order": sequence == sorted(sequence),
        "online_drained": drained, "handshake_ms": round((connected - t0) * 1000, 2),
        "connect_to_last_ms": round((last - t0) * 1000, 2), "revoke_status": status,
        "errors": dict(phone.errors.get(tag, {})),
    }


async def _post_many(fleet: Fleet, phone: Phone, tag: str, count: int, window: int) -> None:
    """Send `count` notifications with at most `window` unanswered, and wait for every answer."""
    left = count
    done = asyncio.get_running_loop().create_future()

    def again(p: Phone, answered_tag: str) -> None:
        nonlocal left
        if answered_tag != tag:
            return
        if left > 0:
            left -= 1
            fleet.send(p, tag)
        elif not p.pending_for(tag) and not done.done():
            done.set_result(None)

    phone.on_answer = again
    for _ in range(min(window, count)):
        left -= 1
        fleet.send(phone, tag)
    try:
        await asyncio.wait_for(done, 120)
    finally:
        phone.on_answer = None


# -- the independent harness's case (bench/independent.py) ------------------------------------
async def window(fleet: Fleet, kind: str, settle: float, duration: float, drain: float, tag: str,
                 pids: dict[str, list[int]], window: int = 4, rate: float = 0.0) -> dict[str, Any]:
    """Connect every socket, wait `settle` s, run one `duration` s window, drain, disconnect.

    Server, redis, generator and machine CPU are sampled over the window
    itself (from its first send to its last), not over connect or drain.
    """
    conn = await fleet.connect()  # returns once the server counts every socket
    groups = {**pids, "generator": [os.getpid()]}
    connected = {name: [proc_sample(p) for p in ps] for name, ps in groups.items()}
    machine_connected = machine_sample()
    await asyncio.sleep(settle)
    settled = _window_cpu(groups, connected, machine_connected)[0]  # what the server still did after connecting
    fleet.current_tag = tag
    before = {name: [proc_sample(p) for p in ps] for name, ps in groups.items()}
    machine_before = machine_sample()
    marks: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def window_over() -> None:
        marks.append(_window_cpu(groups, before, machine_before))

    if kind == "latency":
        report = await latency(fleet, rate, duration, drain, tag, on_sent=window_over)
    elif fleet.with_ids:  # the loop closes on acks, as in compare.py's own saturation
        report = await saturate(fleet, duration, window, drain, tag, on_sent=window_over)
    else:
        report = await saturate_on_delivery(fleet, duration, window, drain, tag, on_sent=window_over)
    report["resources"], report["machine"] = marks[0]
    # From the first send to the last delivery (or the drain's end): all the
    # work the window's notifications caused, even on a server that lagged
    # behind its window on a busy machine (bench/ab.py divides this by sent).
    report["drained_resources"] = _window_cpu(groups, before, machine_before)[0]
    report.update(connect=conn, settle=settle, settle_resources=settled, disconnect=await fleet.disconnect())
    fleet.current_tag = "?"
    return report


def _window_cpu(groups: dict[str, list[int]], before: dict[str, list], machine_before: Any) -> tuple[dict, dict]:
    out: dict[str, Any] = {}
    for name, pids in groups.items():
        pairs = [(b, proc_sample(p)) for b, p in zip(before[name], pids)]
        pairs = [(b, a) for b, a in pairs if b and a]
        if not pairs:
            out[name] = None
            continue
        wall = max(pairs[0][1]["t"] - pairs[0][0]["t"], 1e-9)
        cpu_s = sum(a["cpu_s"] - b["cpu_s"] for b, a in pairs)
        out[name] = {"cpu_s": round(cpu_s, 3), "cpu_pct": round(cpu_s / wall * 100, 1), "wall_s": round(wall, 3),
                     "rss_mb_after": round(sum(a["rss_mb"] for _, a in pairs), 1)}
    return out, {"cpus": os.cpu_count(), **machine_usage(machine_before, machine_sample()), "loadavg": os.getloadavg()}


async def saturate_on_delivery(fleet: Fleet, duration: float, window: int, drain: float, tag: str,
                               on_sent: Callable[[], None] | None = None) -> dict[str, Any]:
    """Closed loop without acks: each phone keeps `window` notifications not yet seen by all its receivers."""
    deadline = time.time() + duration
    waiting: dict[str, list[Any]] = {}  # title -> [phone, receivers still to see it]

    def send(phone: Phone) -> None:
        waiting[fleet.send(phone, tag)] = [phone, len(phone.user.receivers)]

    def seen(title: str) -> None:
        entry = waiting.get(title)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del waiting[title]
            if time.time() < deadline:
                send(entry[0])

    started = time.time()
    fleet.on_delivery = seen
    try:
        for phone in fleet.phones:
            for _ in range(window):
                send(phone)
        await asyncio.sleep(max(0.0, deadline - time.time()))
    finally:
        fleet.on_delivery = None
    if on_sent is not None:
        on_sent()
    report = await _settle(fleet, tag, started, drain)
    report.update(window=window, per_second=fleet.per_second(tag, started, duration))
    return report
