"""NotiSync load generator. It runs in its own process and takes commands over a Pipe.

The generator runs in a separate process from the server, so latency is
measured on an event loop that is not also serving the requests. The parent
(bench/latency.py) sends one command at a time (setup, warmup, latency,
saturate) and samples the server's CPU before and after it. This process
does the work and replies with plain dicts, so the results can be pickled.
"""
from __future__ import annotations

import asyncio
import itertools
import signal
import time
import uuid
from collections import Counter
from typing import Any, Awaitable, Callable

from tornado.httpclient import AsyncHTTPClient

from bench.clients import PASSWORD, SAFE_WS_RATE, Phone, Receiver, User, http, summarize

SETUP_CONCURRENCY = 8      # registering hashes passwords with scrypt, which is deliberately slow
HTTP_MAX_CLIENTS = 1000    # Tornado's default of 10 would queue open-loop REST sends on our side
MAX_IN_FLIGHT = 5000       # open-loop REST requests in flight; beyond this a send counts as overflow
DRAIN_POLL = 0.02
SEND_GUARD = 30.0          # extra seconds a send phase may take before it is cut off


class Fleet:
    """U users with one phone and D-1 receivers each, all connected over WebSocket."""

    def __init__(self, port: int, users: int, devices: int, via: str, window: int, rest_concurrency: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.ws_base = f"ws://127.0.0.1:{port}"
        self.n_users = users
        self.n_devices = devices
        self.via = via
        self.window = window
        self.rest_concurrency = rest_concurrency
        self.run_id = uuid.uuid4().hex[:8]
        self.users: list[User] = []
        self.timeline: dict[str, Counter[int]] = {}
        self.titles = itertools.count()
        self.rest_tasks: set[asyncio.Task[None]] = set()
        self.overflow: Counter[str] = Counter()
        AsyncHTTPClient.configure(None, max_clients=HTTP_MAX_CLIENTS)

    @property
    def phones(self) -> list[Phone]:
        return [u.phone for u in self.users if u.phone]

    @property
    def receivers(self) -> list[Receiver]:
        return [r for u in self.users for r in u.receivers]

    # -- setup -------------------------------------------------------------------
    async def setup(self) -> dict[str, Any]:
        started = time.time()
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(index: int) -> User:
            async with gate:
                return await self._make_user(index)

        self.users = list(await asyncio.gather(*(one(i) for i in range(self.n_users))))
        _, health = await http(self.base, "GET", "/health")
        return {"seconds": round(time.time() - started, 2), "sockets": self.n_users * self.n_devices,
                "server_connections": (health or {}).get("websocket", {}).get("connections")}

    async def _make_user(self, index: int) -> User:
        user = User(index)
        email = f"bench-{self.run_id}-{index}@example.com"
        await self._expect(201, "POST", "/api/v1/auth/register", {"email": email, "password": PASSWORD})
        login = await self._expect(200, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
        user.token = login["access_token"]
        for d in range(self.n_devices):
            kind = "mobile" if d == 0 else ("web", "desktop")[d % 2]
            device = await self._expect(201, "POST", "/api/v1/devices",
                                        {"device_name": f"bench-{kind}-{d}", "device_type": kind}, user.token)
            if d == 0:
                user.phone = Phone(user, device["id"])
            else:
                user.receivers.append(Receiver(user, device["id"], self.timeline))
        for dev in user.devices:
            await dev.connect(self.ws_base)
        return user

    async def _expect(self, status: int, method: str, path: str, body: Any, token: str | None = None) -> Any:
        got, reply = await http(self.base, method, path, body, token)
        if got != status:
            raise RuntimeError(f"{method} {path}: expected {status}, got {got}: {reply}")
        return reply

    # -- scenarios -----------------------------------------------------------------
    async def warmup(self, drain: float) -> dict[str, Any]:
        """One notification per phone. Every socket must be live before anything is measured."""
        tag = "W"
        started = time.time()
        for phone in self.phones:
            await self._send(phone, tag)
        drained = await self._drain(tag, drain)
        return self._report(tag, started, time.time(), drained)

    async def latency(self, rate: float, duration: float, drain: float, tag: str) -> dict[str, Any]:
        """Open loop: send i is due at t0 + i/R, whatever the replies are doing."""
        count = max(1, round(rate * duration))
        phones = self.phones
        lags: list[float] = []
        started = time.time()
        interval = 1.0 / rate
        sent = 0
        while sent < count and time.time() < started + duration + SEND_GUARD:
            now = time.time()
            due = min(count, int((now - started) / interval) + 1)
            for seq in range(sent, due):  # catch up in one burst if the loop was late
                lags.append(now - (started + seq * interval))
                await self._send(phones[seq % len(phones)], tag)
            sent = due
            if sent < count:
                await asyncio.sleep(max(0.0, started + sent * interval - time.time()))
        sends_done = time.time()
        drained = await self._drain(tag, drain)
        report = self._report(tag, started, sends_done, drained)
        report.update(rate=rate, scheduled=count, schedule_lag_ms=summarize(lags))
        return report

    async def saturate(self, duration: float, drain: float, tag: str) -> dict[str, Any]:
        """Closed loop: each phone (WS) or each REST worker sends again as soon as the last one is answered."""
        started = time.time()
        deadline = started + duration
        if self.via == "ws":
            loops = [self._ws_closed_loop(p, tag, deadline) for p in self.phones]
            cap: float | None = SAFE_WS_RATE * len(self.phones)
        else:
            loops = [self._rest_closed_loop(k, tag, deadline) for k in range(self.rest_concurrency)]
            cap = None
        await asyncio.gather(*loops)
        sends_done = time.time()
        drained = await self._drain(tag, drain)
        report = self._report(tag, started, sends_done, drained)
        report.update(client_cap_per_s=cap, per_second=self._per_second(tag, started, duration))
        return report

    async def _ws_closed_loop(self, phone: Phone, tag: str, deadline: float) -> None:
        # Up to `window` unanswered frames per phone. Sends are paced at
        # SAFE_WS_RATE so the server's per-socket limit never rejects them.
        phone.slots = asyncio.Semaphore(self.window)
        next_at = time.time()
        try:
            while time.time() < deadline:
                if not await _acquire(phone.slots, deadline - time.time()):
                    return
                await asyncio.sleep(max(0.0, next_at - time.time()))
                if time.time() >= deadline:
                    phone.slots.release()
                    return
                next_at = max(time.time(), next_at) + 1.0 / SAFE_WS_RATE
                await self._send(phone, tag)
        finally:
            phone.slots = None

    async def _rest_closed_loop(self, worker: int, tag: str, deadline: float) -> None:
        phones = self.phones
        for seq in itertools.count():
            if time.time() >= deadline:
                return
            phone = phones[(worker + seq * self.rest_concurrency) % len(phones)]
            await phone.send_rest(self.base, tag, f"{tag}#{next(self.titles)}")

    async def _send(self, phone: Phone, tag: str) -> None:
        """Send one notification, without waiting for the answer."""
        title = f"{tag}#{next(self.titles)}"
        phone.tag = tag
        if self.via == "ws":
            phone.send_ws(tag, title)
        elif len(self.rest_tasks) >= MAX_IN_FLIGHT:
            self.overflow[tag] += 1
        else:
            task = asyncio.ensure_future(phone.send_rest(self.base, tag, title))
            self.rest_tasks.add(task)
            task.add_done_callback(self.rest_tasks.discard)

    # -- accounting -------------------------------------------------------------------
    async def _drain(self, tag: str, timeout: float) -> bool:
        """Wait until every send is answered and every accepted notification reached every receiver."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._settled(tag):
                return True
            await asyncio.sleep(DRAIN_POLL)
        return self._settled(tag)

    def _settled(self, tag: str) -> bool:
        if self.rest_tasks or any(p.pending_for(tag) for p in self.phones):
            return False
        expected = sum(len(u.phone.sent.get(tag, ())) * len(u.receivers) for u in self.users if u.phone)
        return sum(len(r.got.get(tag, ())) for r in self.receivers) >= expected

    def _report(self, tag: str, started: float, sends_done: float, drained: bool) -> dict[str, Any]:
        sent = expected = received = missing = unexpected = 0
        latencies: list[float] = []
        for user in self.users:
            accepted = user.phone.sent.get(tag, {}) if user.phone else {}
            sent += len(accepted)
            for rcv in user.receivers:
                got = rcv.got.get(tag, {})
                expected += len(accepted)
                received += sum(1 for nid in got if nid in accepted)
                missing += sum(1 for nid in accepted if nid not in got)
                unexpected += sum(1 for nid in got if nid not in accepted)
                latencies.extend(got.values())
        last = max((r.last.get(tag, 0.0) for r in self.receivers), default=0.0)
        span = max(last, sends_done) - started
        return {
            "tag": tag, "via": self.via, "sent": sent, "expected": expected, "received": received,
            "missing": missing, "unexpected": unexpected, "drained": drained,
            "errors": dict(self._errors(tag)), "unanswered": sum(p.pending_for(tag) for p in self.phones),
            "overflow": self.overflow.get(tag, 0), "send_seconds": round(sends_done - started, 3),
            "span_seconds": round(span, 3), "sent_per_s": round(sent / max(sends_done - started, 1e-9), 1),
            "deliveries_per_s": round(received / max(span, 1e-9), 1),
            "latency_ms": summarize(latencies), "accept_ms": summarize(self._ack_latency(tag)),
            "duplicates": sum(r.dups for r in self.receivers), "echoes": sum(p.echoes for p in self.phones),
            "closed_sockets": sum(1 for u in self.users for d in u.devices if d.closed_code is not None),
        }

    def _errors(self, tag: str) -> Counter[str]:
        total: Counter[str] = Counter()
        for phone in self.phones:
            total.update(phone.errors.get(tag, Counter()))
        return total

    def _ack_latency(self, tag: str) -> list[float]:
        return [x for p in self.phones for x in p.ack_latency.get(tag, ())]

    def _per_second(self, tag: str, started: float, duration: float) -> dict[str, Any]:
        """Deliveries in each whole second of the send window: shows whether the rate held up."""
        counts = self.timeline.get(tag, Counter())
        first = int(started) + 1  # skip the partial first and last seconds
        seconds = [counts.get(s, 0) for s in range(first, int(started + duration))]
        if not seconds:
            return {}
        return {"min": min(seconds), "median": sorted(seconds)[len(seconds) // 2], "max": max(seconds),
                "seconds": seconds}

    async def close(self) -> None:
        for user in self.users:
            for dev in user.devices:
                dev.close()
        await asyncio.sleep(0.2)  # let close frames go out before the process ends


async def _acquire(gate: asyncio.Semaphore, timeout: float) -> bool:
    try:
        await asyncio.wait_for(gate.acquire(), max(0.0, timeout))
        return True
    except asyncio.TimeoutError:
        return False


# -- process entry ----------------------------------------------------------------------
def run(conn: Any, config: dict[str, Any]) -> None:
    """multiprocessing target. Ctrl-C goes to the parent, which tells us to quit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(conn, config))


async def _serve(conn: Any, config: dict[str, Any]) -> None:
    fleet = Fleet(**config)
    handlers: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
        "setup": fleet.setup, "warmup": fleet.warmup, "latency": fleet.latency, "saturate": fleet.saturate,
    }
    loop = asyncio.get_running_loop()
    try:
        while True:
            command, args = await loop.run_in_executor(None, _receive, conn)
            if command not in handlers:
                return
            try:
                result = await handlers[command](**args)
            except Exception as exc:  # report to the parent instead of dying silently
                result = {"error": f"{type(exc).__name__}: {exc}"}
            conn.send(result)
    finally:
        await fleet.close()


def _receive(conn: Any) -> tuple[str, dict[str, Any]]:
    try:
        return conn.recv()
    except (EOFError, OSError):  # the parent went away
        return "quit", {}
