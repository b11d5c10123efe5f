"""The load generator: U users x D devices on one target, and the scenarios it runs.

It runs in its own process (bench/genproc.py) so that latency is measured
on an event loop that is not also serving. Device 0 of each user is the
phone; the others receive. With several ports (several nodes), a user's
devices are spread over the nodes, so fan-out has to cross between them.
"""
from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from typing import Any

from tornado.httpclient import AsyncHTTPClient

from bench import fastclient
from bench.actors import Device, Phone, Receiver, User, account
from bench.common import PASSWORD, error_code, http, summarize
from bench.dialects import SocketIODialect, SpecDialect

SETUP_CONCURRENCY = 8      # registration hashes passwords with scrypt, deliberately slow
CONNECT_CONCURRENCY = 100  # handshakes in flight while connecting
DRAIN_POLL = 0.02
SEND_GUARD = 30.0          # extra seconds an open-loop send phase may take before it is cut off
HOST = "127.0.0.1"


class Fleet:
    def __init__(self, ports: list[int], users: int, devices: int, dialect: str, accounts: bool,
                 frame_ids: bool = True, resume: bool = True) -> None:
        self.ports = ports
        self.base = f"http://{HOST}:{ports[0]}"
        self.n_users, self.n_devices = users, devices
        self.dialect = SocketIODialect() if dialect == "socketio" else SpecDialect(authenticated=accounts)
        self.accounts = accounts  # NotiSync: real accounts, tokens and device records over REST
        self.run_id = uuid.uuid4().hex[:8]
        self.users: list[User] = []
        self.timeline: dict[str, Counter[int]] = {}
        self.frame_ids = itertools.count()
        # Without frame ids (bench/independent.py) nothing is acknowledged: a send
        # counts as accepted when made, deliveries are matched by title, and the
        # server's error frames are counted against `current_tag`.
        self.with_ids = frame_ids
        self.resume = resume  # NotiSync: connect with last_id=0 (replay the stream) or from the saved cursor
        self.current_tag = "?"
        self.on_delivery: Any = None  # callable(title), for loops closed on delivery
        AsyncHTTPClient.configure(None, max_clients=200)

    @property
    def phones(self) -> list[Phone]:
        return [u.phone for u in self.users if u.phone]

    @property
    def receivers(self) -> list[Receiver]:
        return [r for u in self.users for r in u.receivers]

    # -- setup ------------------------------------------------------------------
    async def prepare(self) -> dict[str, Any]:
        """Accounts and device records (NotiSync) or just names (peers); no sockets yet."""
        started = time.time()
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(index: int) -> User:
            async with gate:
                return await self._make_user(index)

        self.users = list(await asyncio.gather(*(one(i) for i in range(self.n_users))))
        return {"seconds": round(time.time() - started, 2)}

    async def _make_user(self, index: int) -> User:
        user = User(index, f"u{self.run_id}-{index}")
        if self.accounts:
            email = f"bench-{self.run_id}-{index}@example.com"
            await self._expect(201, "POST", "/api/v1/auth/register", {"email": email, "password": PASSWORD})
            login = await self._expect(200, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
            user.token = login["access_token"]
        for d in range(self.n_devices):
            device_id = await self._new_device(user, d) if self.accounts else f"{user.key}-d{d}"
            port = self.ports[(index + d) % len(self.ports)]
            if d == 0:
                user.phone = Phone(user, device_id, port)
            else:
                user.receivers.append(Receiver(user, device_id, port))
        return user

    async def _new_device(self, user: User, d: int) -> str:
        kind = "mobile" if d == 0 else ("web", "desktop")[d % 2]
        body = {"device_name": f"bench-{kind}-{d}", "device_type": kind}
        return (await self._expect(201, "POST", "/api/v1/devices", body, user.token))["id"]

    async def _expect(self, status: int, method: str, path: str, body: Any, token: str | None = None) -> Any:
        got, reply = await http(self.base, method, path, body, token)
        if got != status:
            raise RuntimeError(f"{method} {path}: expected {status}, got {got}: {reply}")
        return reply

    async def connect(self) -> dict[str, Any]:
        """Open every device's socket; report the connect rate and what the server counts."""
        started = time.time()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(dev: Device) -> None:
            async with gate:
                await self.open(dev)

        await asyncio.gather(*(one(d) for u in self.users for d in u.devices))
        handshakes = time.time() - started
        sockets = sum(len(u.devices) for u in self.users)
        counted = await self.server_connections(sockets)
        registered = time.time() - started  # every socket registered server-side, not just upgraded
        return {"sockets": sockets, "seconds": round(registered, 2), "handshake_seconds": round(handshakes, 2),
                "per_s": round(sockets / max(registered, 1e-9), 1), "server_connections": counted}

    async def open(self, dev: Device, resume: bool | None = None) -> None:
        resume = self.resume if resume is None else resume
        path = self.dialect.path(dev.user.key, dev.user.token, dev.id, resume)
        dev.ws = await fastclient.connect(HOST, dev.port, path, lambda p, d=dev: self._on_payload(d, p),
                                          dev.on_closed)
        hello = self.dialect.hello(dev.user.key, dev.id)
        if hello is not None:
            dev.ready = asyncio.get_running_loop().create_future()
            dev.ws.send(hello)
            await asyncio.wait_for(dev.ready, fastclient.HANDSHAKE_TIMEOUT)

    async def server_connections(self, expect: int) -> int | None:
        """Sockets the server(s) count, polled until they match what we opened (auth is asynchronous)."""
        deadline = time.time() + 15 + expect / 100  # a server may queue setups during a connect burst
        total: int | None = None
        while time.time() < deadline:
            total = 0
            for port in self.ports:
                _, health = await http(f"http://{HOST}:{port}", "GET", "/health")
                health = health if isinstance(health, dict) else {}
                total += (health.get("websocket") or health).get("connections") or 0
            if total >= expect:
                break
            await asyncio.sleep(0.1)
        return total

    # -- frames in ----------------------------------------------------------------
    def _on_payload(self, dev: Device, payload: bytes) -> None:
        msg = self.dialect.parse(payload)
        if msg is None:
            return
        kind = msg[0]
        if kind == "n":
            if dev.is_phone:
                dev.echoes += 1  # type: ignore[attr-defined]
            else:
                key = msg[1] if self.with_ids else msg[2]
                dev.delivered(key, msg[2], msg[3], self.timeline)  # type: ignore[attr-defined]
                if self.on_delivery is not None:
                    self.on_delivery(msg[2])
        elif kind == "a" and dev.is_phone:
            if self.with_ids:  # without ids only the bare peers answer, with id null: ignored
                dev.answered(msg[1], msg[2], None)  # type: ignore[attr-defined]
        elif kind == "e":
            if dev.is_phone and not self.with_ids:
                dev.count_error(self.current_tag, msg[2])  # type: ignore[attr-defined]
            elif dev.is_phone:
                dev.answered(msg[1], None, msg[2])  # type: ignore[attr-defined]
            if dev.ready is not None and not dev.ready.done():
                dev.ready.set_exception(RuntimeError(f"session refused: {msg[2]}"))
        elif kind == "ping":
            dev.ws.send(msg[1])
        elif kind == "ready" and dev.ready is not None and not dev.ready.done():
            dev.ready.set_result(None)

    # -- frames out ---------------------------------------------------------------
    def send(self, phone: Phone, tag: str) -> str:
        """Send one notification; returns its title (what receivers match it by without ids)."""
        frame_id = str(next(self.frame_ids))
        now = time.time()
        title = f"{tag}#{frame_id}"
        data = {"app_name": "Bench", "title": title, "body": repr(now)}
        if self.with_ids:
            phone.track(frame_id, tag, now)
            phone.ws.send(self.dialect.notification(frame_id, data))
        else:
            phone.sent.setdefault(tag, {})[title] = now
            phone.ws.send(self.dialect.notification(None, data))
        return title

    async def send_rest(self, phone: Phone, tag: str) -> None:
        now = time.time()
        body = {"app_name": "Bench", "title": f"{tag}#r{next(self.frame_ids)}", "body": repr(now)}
        try:
            status, reply = await http(self.base, "POST", "/api/v1/notifications", body, phone.user.token,
                                       {"X-Device-ID": phone.id})
        except Exception as exc:  # refused, timed out: a failed send, not a crashed generator
            phone.count_error(tag, type(exc).__name__)
            return
        if status == 201:
            phone.accept(tag, reply["id"], now)
        else:
            phone.count_error(tag, error_code(status, reply))

    # -- accounting ---------------------------------------------------------------
    async def drain(self, tag: str, timeout: float, users: list[User] | None = None) -> bool:
        """Wait until every send is answered and every accepted notification reached every receiver."""
        users = users or self.users
        deadline = time.time() + timeout
        while True:
            unanswered = sum(u.phone.pending_for(tag) for u in users if u.phone)
            if not unanswered and account(users, tag)["received"] >= account(users, tag)["expected"]:
                return True
            if time.time() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL)

    def report(self, tag: str, started: float, sends_done: float, drained: bool) -> dict[str, Any]:
        acc = account(self.users, tag)
        latencies = acc.pop("latencies")
        last = max((r.last.get(tag, 0.0) for r in self.receivers), default=0.0)
        span = max(last, sends_done) - started
        errors: Counter[str] = Counter()
        for phone in self.phones:
            errors.update(phone.errors.get(tag, Counter()))
        return {
            "tag": tag, **acc, "drained": drained, "errors": dict(errors),
            "unanswered": sum(p.pending_for(tag) for p in self.phones),
            "send_seconds": round(sends_done - started, 3), "span_seconds": round(span, 3),
            "sent_per_s": round(acc["sent"] / max(sends_done - started, 1e-9), 1),
            "deliveries_per_s": round(acc["received"] / max(span, 1e-9), 1),
            "latency_ms": summarize(latencies),
            "accept_ms": summarize([x for p in self.phones for x in p.ack_latency.get(tag, ())]),
            "duplicates": sum(r.dups for r in self.receivers), "echoes": sum(p.echoes for p in self.phones),
            "closed_sockets": sum(1 for u in self.users for d in u.devices if d.closed_code is not None),
        }

    def per_second(self, tag: str, started: float, duration: float) -> dict[str, Any]:
        """Deliveries in each whole second of the send window: shows whether the rate held up."""
        counts = self.timeline.get(tag, Counter())
        seconds = [counts.get(s, 0) for s in range(int(started) + 1, int(started + duration))]
        if not seconds:
            return {}
        return {"min": min(seconds), "median": sorted(seconds)[len(seconds) // 2], "max": max(seconds)}

    async def disconnect(self, timeout: float = 60.0) -> dict[str, Any]:
        """Close every socket and wait until the server(s) count none (their cleanup done)."""
        for dev in (d for u in self.users for d in u.devices):
            if dev.ws is not None:
                dev.ws.close()
        started = time.time()
        left: int | None = None
        while time.time() < started + timeout:
            await asyncio.sleep(0.2)
            left = 0
            for port in self.ports:
                _, health = await http(f"http://{HOST}:{port}", "GET", "/health")
                health = health if isinstance(health, dict) else {}
                left += (health.get("websocket") or health).get("connections") or 0
            if not left:
                break
        for dev in (d for u in self.users for d in u.devices):
            dev.ws, dev.closed_code = None, None
        return {"seconds": round(time.time() - started, 2), "server_connections_left": left}

    async def close(self) -> None:
        for user in self.users:
            for dev in user.devices:
                if dev.ws is not None:
                    dev.ws.close()
        await asyncio.sleep(0.2)
