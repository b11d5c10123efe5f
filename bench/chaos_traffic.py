"""Traffic for bench/chaos.py: HTTP calls with retries, the users and their
phones (open-loop posts, each retried with its source_key until accepted or
out of budget) and the receivers (one churning socket each, recording what
arrives in what order).

Everything here talks to the nodes over HTTP / WebSocket on 127.0.0.1 only,
through one pooled aiohttp session; nothing imports the server.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import aiohttp

from chaos_faults import HOST

ATTEMPT_TIMEOUT = 8.0  # s per HTTP attempt (the node's own Redis timeout is 5 s)
TRANSPORT = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
PASSWORD = "chaos-password-1"
MAX_ATTEMPTS, POST_BUDGET = 40, 30.0  # a post retries this often / this long before it is "unacked"
SETTLE_BOUND, QUIET = 30.0, 2.0
STREAM = ("new_notification", "notification_sync", "notification_updated")


# -- HTTP ---------------------------------------------------------------------------------
class Api:
    def __init__(self, session: aiohttp.ClientSession, ports: list[int]) -> None:
        self.session, self.ports = session, ports

    async def call(self, method: str, node: int, path: str, body: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        """One attempt on node (index, modulo the node count); transport errors propagate."""
        hdrs = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        url = f"http://{HOST}:{self.ports[node % len(self.ports)]}{path}"
        async with self.session.request(method, url, json=body, headers=hdrs,
                                        timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT)) as r:
            raw = await r.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw[:200].decode(errors="replace")
        return r.status, data, r.headers

    async def must(self, method: str, path: str, body: Any = None, token: str | None = None,
                   ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        """Set-up and checking calls: retried through transport errors and 5xx, alternating nodes."""
        last: Any = None
        for attempt in range(30):
            try:
                status, data, _ = await self.call(method, attempt, path, body, token)
            except TRANSPORT as exc:
                status, data = 0, repr(exc)
            if status in ok:
                return status, data
            if status == 429 and path.startswith("/api/v1/auth/"):
                raise RuntimeError(f"{path}: 429 {data}; the nodes' registration limit is on (see --server-arg)")
            if 0 < status < 500:
                raise RuntimeError(f"{method} {path}: {status} {data}")
            last = f"{status} {data}"
            await asyncio.sleep(0.2)
        raise RuntimeError(f"{method} {path}: gave up, last {last}")


# -- users ---------------------------------------------------------------------------------
class User:
    def __init__(self, idx: int, email: str) -> None:
        self.idx, self.email = idx, email
        self.token = self.refresh_token = self.phone = ""
        self.expires_at, self.gen, self.renewals, self.renew_failures = 0.0, 0, 0, 0
        self.lock = asyncio.Lock()
        self.receivers: list[Receiver] = []

    def set_tokens(self, body: dict[str, Any]) -> None:
        self.token, self.refresh_token = body["access_token"], body["refresh_token"]
        self.expires_at = time.monotonic() + float(body.get("expires_in") or 900)
        self.gen += 1

    async def fresh(self, api: Api, seen_gen: int | None = None) -> None:
        """Renew once per expiry (seen_gen None) or per 401 on token generation seen_gen, however many ask."""
        if seen_gen is None and time.monotonic() < self.expires_at - 60:
            return
        async with self.lock:
            if (seen_gen != self.gen) if seen_gen is not None else (time.monotonic() < self.expires_at - 60):
                return  # renewed meanwhile
            self.renewals += 1
            # A refresh answered by a node that died before we read it used the token up: then log in.
            for path, body in (("refresh", {"refresh_token": self.refresh_token}),
                               ("login", {"email": self.email, "password": PASSWORD})):
                try:
                    self.set_tokens((await api.must("POST", f"/api/v1/auth/{path}", body))[1])
                    return
                except RuntimeError:
                    pass
            self.renew_failures += 1  # callers go on with the old token; their retries are bounded


# -- receivers -----------------------------------------------------------------------------
def position(envelope_id: str) -> tuple[str, int, int] | None:
    epoch, _, stream_id = envelope_id.partition(":")
    try:
        ms, seq = stream_id.split("-")
        return epoch, int(ms), int(seq)
    except ValueError:
        return None


class Receiver:
    def __init__(self, user: User, device_id: str, name: str) -> None:
        self.user, self.id, self.name = user, device_id, name
        self.seen: set[str] = set()
        self.last_id: str | None = None
        self.last_pos: tuple[str, int, int] | None = None
        self.got: dict[str, list[str]] = {}      # notification id -> envelope ids (repeats dropped)
        self.by_key: dict[str, set[str]] = {}    # source_key (the title) -> notification ids
        self.repeats = self.out_of_order = self.epoch_changes = self.malformed = self.connects = 0
        self.ooo_examples: list[list[str]] = []
        self.sync_required: list[list[Any]] = []
        self.failures: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.last_frame = 0.0

    def on_frame(self, text: str) -> None:
        frame = json.loads(text)
        kind, fid, data = frame.get("type"), frame.get("id"), frame.get("data") or {}
        if kind == "sync_required":
            self.sync_required.append([round(time.time(), 3), data.get("reason"), self.last_id])
        if kind not in STREAM or not isinstance(fid, str):
            return
        self.last_frame = asyncio.get_running_loop().time()
        if fid in self.seen:
            self.repeats += 1
            return
        self.seen.add(fid)
        pos = position(fid)
        if pos is None:
            self.malformed += 1
        elif self.last_pos is not None and pos[0] == self.last_pos[0] and pos[1:] <= self.last_pos[1:]:
            self.out_of_order += 1
            if len(self.ooo_examples) < 3:
                self.ooo_examples.append([self.last_id or "", fid])
        else:
            self.epoch_changes += self.last_pos is not None and pos[0] != self.last_pos[0]
            self.last_pos, self.last_id = pos, fid
        if kind == "new_notification" and data.get("id"):
            self.got.setdefault(data["id"], []).append(fid)
            self.by_key.setdefault(str(data.get("title")), set()).add(data["id"])

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            self.on_frame(msg.data)

    async def connect_once(self, api: Api, node: int, lifetime: float, stop: asyncio.Event | None = None,
                           quiet: float | None = None, bare: bool = False) -> str:
        """One socket: 'lifetime' / 'stopped' / 'quiet' when we closed it, 'closed' by the server, 'error'."""
        loop = asyncio.get_running_loop()
        await self.user.fresh(api)
        gen = self.user.gen
        query = {"token": self.user.token, "device_id": self.id}
        if not bare or self.last_id is None:
            query["last_id"] = self.last_id or "0"
        url = f"ws://{HOST}:{api.ports[node % len(api.ports)]}/ws?{urlencode(query)}"
        try:
            ws = await asyncio.wait_for(api.session.ws_connect(
                url, autoping=True, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)), 5)
        except TRANSPORT as exc:
            self.failures[type(exc).__name__] += 1
            return "error"
        self.connects += 1
        opened = self.last_frame = loop.time()
        reader, outcome = asyncio.ensure_future(self._read(ws)), "lifetime"
        try:
            while not reader.done() and loop.time() - opened < lifetime:
                if stop is not None and stop.is_set():
                    outcome = "stopped"
                    break
                if quiet is not None and loop.time() - self.last_frame >= quiet:
                    outcome = "quiet"
                    break
                await asyncio.wait([reader], timeout=0.2)
            if reader.done():
                self.closes[str(ws.close_code)] += 1
                if ws.close_code == 1008:  # token expired or refused: renew before the next try
                    await self.user.fresh(api, gen)
                return "closed"
            return outcome
        finally:
            if not reader.done():
                try:
                    await asyncio.wait_for(ws.close(), 3)
                except (*TRANSPORT, RuntimeError):
                    pass
                reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, *TRANSPORT, ValueError):
                pass

    async def churn(self, api: Api, rng: random.Random, stop: asyncio.Event, bare_share: float) -> None:
        failures = 0
        while not stop.is_set():
            result = await self.connect_once(api, rng.randrange(len(api.ports)), rng.uniform(0.5, 5.0), stop,
                                             bare=rng.random() < bare_share)
            failures = 0 if result in ("lifetime", "stopped") else failures + 1
            pause = min(0.1 * 2 ** failures, 2.0) * rng.uniform(0.5, 1.5) if failures else rng.uniform(0, 0.5)
            try:
                await asyncio.wait_for(stop.wait(), pause)
            except asyncio.TimeoutError:
                pass

    async def settle(self, api: Api, rng: random.Random) -> bool:
        loop = asyncio.get_running_loop()
        deadline, node, failures = loop.time() + SETTLE_BOUND, rng.randrange(len(api.ports)), 0
        while loop.time() < deadline:
            if await self.connect_once(api, node, deadline - loop.time(), None, QUIET) == "quiet":
                return True
            node, failures = node + 1, failures + 1
            await asyncio.sleep(min(0.1 * 2 ** failures, 1.0))
        return False


# -- phones --------------------------------------------------------------------------------
class Post:
    __slots__ = ("user", "key", "t", "attempts", "nid", "status", "final")

    def __init__(self, user: int, key: str, t: float) -> None:
        self.user, self.key, self.t = user, key, t
        self.attempts: list[str] = []
        self.nid: str | None = None
        self.status: int | None = None
        self.final = "pending"


async def post_one(api: Api, user: User, post: Post, rng: random.Random, t0: float) -> None:
    """Until accepted, rejected or out of budget; each attempt is logged as outcome@node+start (s into the load)."""
    loop = asyncio.get_running_loop()
    body = {"app_name": "Chaos", "title": post.key, "body": f"{time.time():.6f}", "source_key": post.key}
    node, started = rng.randrange(len(api.ports)), loop.time()
    while len(post.attempts) < MAX_ATTEMPTS and loop.time() - started < POST_BUDGET:
        await user.fresh(api)
        gen, where = user.gen, f"@n{node % len(api.ports)}+{loop.time() - t0:.2f}"
        pause = min(0.05 * 2 ** len(post.attempts), 1.0) * rng.uniform(0.5, 1.5)
        try:
            status, data, headers = await api.call("POST", node, "/api/v1/notifications", body, user.token,
                                                   {"X-Device-ID": user.phone})
        except asyncio.TimeoutError:
            outcome = "timeout"
        except aiohttp.ClientConnectorError:
            outcome = "refused"  # never reached a server
        except (aiohttp.ClientError, OSError):
            outcome = "dropped"  # sent, answer lost: the server may have done it
        else:
            outcome = str(status)
            if status in (200, 201) and isinstance(data, dict) and data.get("id"):
                post.attempts.append(outcome + where)
                post.nid, post.status, post.final = data["id"], status, "accepted"
                return
            if status == 401:
                await user.fresh(api, gen)
            elif status == 429:
                pause = min(float(headers.get("Retry-After") or 1), 5.0)
            elif status < 500:
                post.attempts.append(outcome + where)
                post.final = "rejected"
                return
        post.attempts.append(outcome + where)
        node += 1
        await asyncio.sleep(pause)
    post.final = "unacked"


async def generate(api: Api, users: list[User], posts: list[Post], args: argparse.Namespace,
                   rng: random.Random, t0: float, run_id: str) -> tuple[set[asyncio.Task[None]], float]:
    """Open loop: post i is due at t0 + i/rate, whatever the answers to earlier ones."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    max_lag = 0.0
    for i in range(int(args.rate * args.duration)):
        delay = t0 + i / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        max_lag = max(max_lag, -delay)
        user = users[i % len(users)]
        posts.append(Post(user.idx, f"chaos-{run_id}-{user.idx}-{i}", round(loop.time() - t0, 3)))
        tasks.add(asyncio.ensure_future(post_one(api, user, posts[-1], rng, t0)))
    return tasks, max_lag


async def make_user(api: Api, idx: int, run_id: str) -> User:
    user = User(idx, f"chaos-{run_id}-{idx}@example.com")
    await api.must("POST", "/api/v1/auth/register", {"email": user.email, "password": PASSWORD}, ok=(201,))
    user.set_tokens((await api.must("POST", "/api/v1/auth/login", {"email": user.email, "password": PASSWORD}))[1])
    for d in range(4):  # a client-chosen id makes the create idempotent, so retries are safe
        _, dev = await api.must("POST", "/api/v1/devices", {
            "id": str(uuid.uuid4()), "device_name": f"chaos {d}",
            "device_type": "mobile" if d == 0 else ("web", "desktop")[d % 2]}, user.token)
        if d == 0:
            user.phone = dev["id"]
        else:
            user.receivers.append(Receiver(user, dev["id"], f"u{idx}d{d}"))
    return user
