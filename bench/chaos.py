"""Randomized chaos run: is anything lost, duplicated, reordered or phantom when
nodes (and optionally the embedded redis) are SIGKILLed under load?

    python bench/chaos.py [--users 20 --rate 200 --duration 60 --kills 20 --redis-kills 0
                           --seed 1 --server-dir DIR --snapshot --json]

Two nodes (``python run.py --port P --data-dir D``, cwd = --server-dir, so any
checkout can be measured) share one data dir: one SQLite file, one embedded
redis. Every restart loads the tree as it is then: the fingerprint of its
edits is taken at each start and a mix is flagged; ``--snapshot`` runs a
copy taken at the start instead, for a tree someone is editing. N users x 4
devices; device 0 is the phone, 1..3 receive. Traffic goes to 127.0.0.1 only.

- Phones post over REST at an aggregate open-loop rate (post i is due at
  i/rate, round-robin over users), each with a unique ``source_key`` (also
  the title, so a receiver can tell a retry that became a second
  notification) and ``X-Device-ID``. Refused, dropped, timed-out, 5xx and
  429 attempts are retried with the SAME source_key on alternating nodes,
  with backoff, at most 40 attempts / 30 s; 201 or 200 = accepted (its
  ``id`` recorded); still failing = "unacked", reported but not lost.
- Receivers hold one socket each to a random node with ``last_id`` = the
  newest envelope id they hold (``0`` at first), drop repeated envelope ids,
  close after 0.5-5 s and reconnect after 0-0.5 s, or with backoff to a
  random node after a failure. ``--bare-reconnects F`` makes that share of
  reconnects omit ``last_id`` (the server's saved position decides).
- Faults (chaos_lib.py): each after a random share of the load time left
  once the kill-restart cycles still to come are set aside (so slow
  restarts do not push faults past the load), on a random node, never
  while the other is down, restarted on its port 0.5-1 s later.
  ``--redis-kills`` SIGKILLs the redis named by <data-dir>/redis.pid
  (never while it is down: a node kill goes first then) and leaves it to
  the nodes to bring it back; the run says which node did, and whether it
  was already running (supervision) or starting up.
- Afterwards: faults stop with every node serving, retries drain, churn
  stops, and each receiver reconnects with ``last_id`` and reads until 2 s
  pass without a stream frame (at most 30 s).

Per receiver, over its user's accepted notifications: lost = never received,
unless the device got ``sync_required`` (then "missed, told sync_required":
the client refetches, so not silent); duplicated = one notification id under
two envelope ids, or two ids for one source_key; out-of-order = an envelope
position (``<epoch>:<ms>-<seq>``, same epoch) not above the previous one, in
receive order after dropping repeats; phantom = a received id the server does
not have (each user's notifications are listed; GET /{id} must answer 404 for
a received id the list lacks: one GET per suspect, not per id).

Exit 0 if lost, duplicated, out-of-order and phantom are 0 and >= 90 % of posts
were accepted (fewer proves little: exit 1 too); 1 on a violation; 2 if the
harness failed. Every process it started (nodes, any redis-server of its data
dir) is stopped on exit, Ctrl-C and SIGTERM included; logs stay in
/tmp/nschaos-*/logs and are scanned for ERROR / Traceback / WARNING.

Why so: aiohttp for HTTP and WebSocket (one pooled session, per-request total
timeouts, a close with a timeout); one asyncio process (uvloop if present)
whose CPU share is printed, so a saturated generator shows. The faults
have their own Random(seed): the same kinds and nodes for a seed, whatever
the timing. Accounting by listing is exact and cheap (60 pages for 12,000).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chaos_lib as cl  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "chaos-password-1"
MAX_ATTEMPTS, POST_BUDGET = 40, 30.0  # a post retries this often / this long before it is "unacked"
SETTLE_BOUND, QUIET = 30.0, 2.0
STREAM = ("new_notification", "notification_sync", "notification_updated")


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

    async def fresh(self, api: cl.Api, seen_gen: int | None = None) -> None:
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

    async def connect_once(self, api: cl.Api, node: int, lifetime: float, stop: asyncio.Event | None = None,
                           quiet: float | None = None, bare: bool = False) -> str:
        """One socket: 'lifetime' / 'stopped' / 'quiet' when we closed it, 'closed' by the server, 'error'."""
        loop = asyncio.get_running_loop()
        await self.user.fresh(api)
        gen = self.user.gen
        query = {"token": self.user.token, "device_id": self.id}
        if not bare or self.last_id is None:
            query["last_id"] = self.last_id or "0"
        url = f"ws://{cl.HOST}:{api.ports[node % len(api.ports)]}/ws?{urlencode(query)}"
        try:
            ws = await asyncio.wait_for(api.session.ws_connect(
                url, autoping=True, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0)), 5)
        except cl.TRANSPORT as exc:
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
                except (*cl.TRANSPORT, RuntimeError):
                    pass
                reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, *cl.TRANSPORT, ValueError):
                pass

    async def churn(self, api: cl.Api, rng: random.Random, stop: asyncio.Event, bare_share: float) -> None:
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

    async def settle(self, api: cl.Api, rng: random.Random) -> bool:
        loop = asyncio.get_running_loop()
        deadline, node, failures = loop.time() + SETTLE_BOUND, rng.randrange(len(api.ports)), 0
        while loop.time() < deadline:
            if await self.connect_once(api, node, deadline - loop.time(), None, QUIET) == "quiet":
                return True
            node, failures = node + 1, failures + 1
            await asyncio.sleep(min(0.1 * 2 ** failures, 1.0))
        return False


class Post:
    __slots__ = ("user", "key", "t", "attempts", "nid", "status", "final")

    def __init__(self, user: int, key: str, t: float) -> None:
        self.user, self.key, self.t = user, key, t
        self.attempts: list[str] = []
        self.nid: str | None = None
        self.status: int | None = None
        self.final = "pending"


async def post_one(api: cl.Api, user: User, post: Post, rng: random.Random, t0: float) -> None:
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


async def generate(api: cl.Api, users: list[User], posts: list[Post], args: argparse.Namespace,
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


async def make_user(api: cl.Api, idx: int, run_id: str) -> User:
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


async def server_view(api: cl.Api, users: list[User]) -> dict[str, Any]:
    """Each user's stored notifications (listed), and GET /{id} for every received id the list lacks."""
    stored: dict[int, dict[str, str]] = {}
    phantoms: set[str] = set()
    for user in users:
        await user.fresh(api)
        rows: dict[str, str] = {}
        cursor = None
        for _ in range(10_000):
            path = "/api/v1/notifications?limit=200" + (f"&before={quote(cursor)}" if cursor else "")
            page = (await api.must("GET", path, token=user.token))[1]
            rows.update((n["id"], n.get("title") or "") for n in page["notifications"])
            if not (cursor := page.get("next_cursor")):
                break
        for nid in {nid for r in user.receivers for nid in r.got} - rows.keys():
            if (await api.must("GET", f"/api/v1/notifications/{nid}", token=user.token, ok=(200, 404)))[0] == 404:
                phantoms.add(nid)
        stored[user.idx] = rows
    return {"stored": stored, "phantoms": phantoms}


def account(users: list[User], posts: list[Post], view: dict[str, Any], kill_times: list[float]) -> dict[str, Any]:
    accepted: dict[int, dict[str, Post]] = {}
    for p in posts:
        if p.final == "accepted" and p.nid:
            accepted.setdefault(p.user, {})[p.nid] = p
    r: Counter[str] = Counter()
    lost: dict[str, list[str]] = {}
    for user in users:
        acc, stored = accepted.get(user.idx, {}), view["stored"][user.idx]
        r["accepted_not_stored"] += sum(1 for nid in acc if nid not in stored)
        r["source_key_twice_on_server"] += sum(n - 1 for n in Counter(stored.values()).values())
        for rcv in user.receivers:
            r["expected"] += len(acc)
            for nid in acc:
                outcome = "received" if nid in rcv.got else "missed_told_sync_required" if rcv.sync_required else "lost"
                r[outcome] += 1
                if outcome == "lost":
                    lost.setdefault(nid, []).append(rcv.name)
            r["dup_same_id"] += sum(len(envs) - 1 for envs in rcv.got.values())
            r["dup_same_source_key"] += sum(len(nids) - 1 for nids in rcv.by_key.values())
            r["unexpected_received"] += sum(1 for nid in rcv.got if nid not in acc)
            r["phantom"] += sum(1 for nid in rcv.got if nid in view["phantoms"])
            r["devices_told_sync_required"] += bool(rcv.sync_required)
            r["sync_required_frames"] += len(rcv.sync_required)
            for k in ("out_of_order", "repeats", "epoch_changes", "malformed"):
                r[k] += getattr(rcv, k)
    r["duplicated"] = r["dup_same_id"] + r["dup_same_source_key"]
    r["lost_notifications"] = len(lost)
    by_nid = {p.nid: p for p in posts if p.nid}
    def suspect(p: Post) -> float:  # when the answer went missing: the first dropped or timed-out attempt
        return next((float(a.split("+")[1]) for a in p.attempts if a.startswith(("dropped", "timeout"))), p.t)

    details = [{"id": nid, "source_key": p.key, "posted_at_s": p.t, "attempts": p.attempts,
                "devices_missing": devices, "stored": nid in view["stored"][p.user],
                "nearest_node_kill_s": min(kill_times, key=lambda k: abs(k - suspect(p)), default=None)}
               for nid, devices in lost.items() for p in [by_nid[nid]]]
    return {"counts": dict(r), "lost": sorted(details, key=lambda d: d["posted_at_s"]),
            "phantom_ids": sorted(view["phantoms"])[:50]}


async def run(args: argparse.Namespace, cluster: cl.Cluster, say: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    fault_rng, rng = random.Random(args.seed), random.Random(args.seed * 7919 + 1)
    run_id = f"{args.seed % 0xffff:04x}{int(time.time()) % 0xffff:04x}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=600)) as session:
        await cluster.start(session)
        api = cl.Api(session, [n.port for n in cluster.nodes])
        say(f"nodes on ports {api.ports}, data dir {cluster.data_dir}")
        gate = asyncio.Semaphore(8)  # registration hashes passwords: keep the set-up gentle

        async def one(i: int) -> User:
            async with gate:
                return await make_user(api, i, run_id)

        users = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(args.users))), 180)
        receivers = [rcv for u in users for rcv in u.receivers]
        stop_churn, load_done = asyncio.Event(), asyncio.Event()
        churners = [asyncio.ensure_future(r.churn(api, rng, stop_churn, args.bare_reconnects)) for r in receivers]
        await asyncio.sleep(1.5)  # every receiver connected once before the first post
        say(f"{len(users)} users, {len(receivers)} receivers; load {args.rate:g}/s for {args.duration:g}s")
        cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), loop.time()
        faults = asyncio.ensure_future(cl.run_faults(cluster, session, fault_rng, t0, args.duration, args.kills,
                                                     args.redis_kills, load_done, say))
        posts: list[Post] = []
        tasks, max_lag = await generate(api, users, posts, args, rng, t0, run_id)
        load_done.set()
        cpu1, t1 = resource.getrusage(resource.RUSAGE_SELF), loop.time()
        fault_out = await asyncio.wait_for(faults, 120)
        say(f"load done; draining {sum(1 for t in tasks if not t.done())} posts still retrying")
        if tasks:
            await asyncio.wait(tasks, timeout=POST_BUDGET + cl.ATTEMPT_TIMEOUT + 5)
        stop_churn.set()
        await asyncio.wait(churners, timeout=10)
        for t in (*tasks, *churners):
            t.cancel()
        say("settling: every receiver reconnects with last_id and reads until quiet")
        settled = await asyncio.gather(*(rcv.settle(api, rng) for rcv in receivers))
        view = await asyncio.wait_for(server_view(api, users), 120)
    finals = Counter("unacked" if p.final == "pending" else p.final for p in posts)
    cpu = sum(getattr(cpu1, f) - getattr(cpu0, f) for f in ("ru_utime", "ru_stime")) / max(t1 - t0, 1e-9)
    return {
        "load": {"attempted": len(posts), "accepted": finals["accepted"], "unacked": finals["unacked"],
                 "rejected": finals["rejected"], "status": dict(Counter(str(p.status) for p in posts if p.status)),
                 "accepted_after_failure": sum(1 for p in posts if p.nid and len(p.attempts) > 1),
                 "attempt_outcomes": dict(Counter(a.split("@")[0] for p in posts for a in p.attempts)),
                 "generator_max_lag_s": round(max_lag, 3), "generator_cpu_pct": round(cpu * 100, 1),
                 "token_renewals": sum(u.renewals for u in users),
                 "token_renewal_failures": sum(u.renew_failures for u in users),
                 "unacked_examples": [[p.key, p.attempts] for p in posts if p.final != "accepted"][:5]},
        "faults": fault_out,
        "receivers": {"devices": len(receivers), "settled": sum(settled),
                      "connects": sum(r.connects for r in receivers),
                      "failed": sum(sum(r.failures.values()) for r in receivers),
                      "failures": dict(sum((r.failures for r in receivers), Counter())),
                      "server_closes": dict(sum((r.closes for r in receivers), Counter())),
                      "sync_required": {r.name: r.sync_required for r in receivers if r.sync_required},
                      "out_of_order_examples": {r.name: r.ooo_examples for r in receivers if r.ooo_examples}},
        "accounting": account(users, posts, view, [e[0] for e in fault_out["log"] if e[1].startswith("node")]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--rate", type=float, default=200.0, help="notifications/s over all phones")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--kills", type=int, default=20, help="node SIGKILLs during the load")
    ap.add_argument("--redis-kills", type=int, default=0, help="embedded redis SIGKILLs during the load")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bare-reconnects", type=float, default=0.0, help="share of reconnects without last_id")
    ap.add_argument("--server-dir", default=REPO, help="checkout whose run.py is started (default: this repo)")
    ap.add_argument("--snapshot", action="store_true", help="run a copy of --server-dir taken at the start")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the nodes")
    ap.add_argument("--server-arg", action="append", default=[], help="extra run.py flag (repeatable)")
    ap.add_argument("--json", action="store_true", help="write bench/results/chaos-<time>.json")
    ap.add_argument("--keep-data", action="store_true", help="keep the data dir (logs are always kept)")
    args = ap.parse_args()
    args.server_dir = os.path.abspath(args.server_dir)
    if not os.path.isfile(os.path.join(args.server_dir, "run.py")):
        ap.error(f"no run.py in {args.server_dir}")
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    started, server = time.time(), cl.checkout(args.server_dir)
    root = tempfile.mkdtemp(prefix="nschaos-", dir="/tmp")  # short: the redis unix socket path is limited
    run_dir = args.server_dir
    if args.snapshot:  # the tree as it is now, whatever its owner edits (or stashes) during the run
        run_dir = os.path.join(root, "server")
        shutil.copytree(args.server_dir, run_dir, ignore=shutil.ignore_patterns(
            ".git", ".venv", "venv", "data", "bench", "tests", "docs", "__pycache__", "*.egg-info"))
    cluster = cl.Cluster(run_dir, args.python, root, 2, args.server_arg, track_versions=not args.snapshot)

    def say(msg: str) -> None:
        print(f"{time.time() - started:6.1f}s  {msg}", flush=True)

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        return await asyncio.wait_for(run(args, cluster, say), args.duration + 600)

    res: dict[str, Any] | None = None
    error, stop = "", {}
    try:
        res = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        error = "interrupted"
    except Exception as exc:  # the harness failed: still stop everything, and say so
        error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            stop = cluster.shutdown()
        finally:
            cluster.emergency_kill()
            if os.path.isfile(os.path.join(cluster.data_dir, "redis.log")):
                shutil.copy(os.path.join(cluster.data_dir, "redis.log"), cluster.log_dir)
            if not args.keep_data:
                shutil.rmtree(cluster.data_dir, ignore_errors=True)
    logs = cl.scan_logs([n.log_path for n in cluster.nodes])
    say(f"nodes stopped: exit codes {stop.get('exit_codes')}; redis left running: {stop.get('redis_left_running')}")
    cl.print_logs(logs, say)
    say(f"logs in {cluster.log_dir}")
    if res is None:
        say(f"HARNESS FAILED: {error}")
        return 2
    c = res["accounting"]["counts"]
    bad = {k: c[k] for k in ("lost", "duplicated", "out_of_order", "phantom") if c.get(k)}
    share = res["load"]["accepted"] / max(res["load"]["attempted"], 1)
    res["verdict"] = ("FAIL: " + ", ".join(f"{k}={v}" for k, v in bad.items()) if bad else
                      f"INCONCLUSIVE: only {share:.0%} of posts accepted" if share < 0.9 else
                      "PASS: nothing lost, duplicated, reordered or phantom")
    server["changed_during_run"] = cl.checkout(args.server_dir)["fingerprint"] != server["fingerprint"]
    server["versions"] = dict(cluster.versions)
    res.update(args=vars(args), server=server, shutdown=stop, logs=logs,
               log_dir=cluster.log_dir, wall_s=round(time.time() - started, 1),
               started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
    cl.print_report(res)
    if args.json:
        out = os.path.join(REPO, "bench", "results", f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(res, f, indent=1, default=str)
        say(f"results in {out}")
    return 1 if bad or share < 0.9 else 0


if __name__ == "__main__":
    sys.exit(main())
