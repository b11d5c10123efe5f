"""SPEC "Limits" on real servers: devices per user, the post rate (REST, /ws, two nodes),
bytes per socket outbox, and the embedded redis's maxmemory."""
from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time

import pytest
from redis.asyncio import Redis

from store.keys import Keys
from store.ratelimit import RateLimit
from tests.harness import Node, RedisServer, call, new_user, short_tmpdir, ws_connect
from tests.rawws import RawWS


def start(stopped: list[Node], *extra: str, **kw) -> Node:
    n = Node(extra=list(extra), **kw).start()
    stopped.append(n)
    return n


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def until(check, timeout: float = 20.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


# -- devices ------------------------------------------------------------------------
async def test_devices_past_the_limit_get_409_and_a_repeat_is_still_200(stopped) -> None:
    node = start(stopped, "--max-devices", "3")
    user = await new_user(node)
    ids = [await user.device(name=f"d{i}") for i in range(3)]
    r = await user.call("POST", "/api/v1/devices", {"device_name": "d3", "device_type": "web"})
    assert r.status == 409 and r.body["error"]["code"] == "too_many_devices", r.body
    # An idempotent repeat of a device the user has is not a new device.
    r = await user.call("POST", "/api/v1/devices", {"id": ids[0], "device_name": "d0", "device_type": "web"})
    assert r.status == 200, r.body
    # Revoked devices do not count.
    assert (await user.call("DELETE", f"/api/v1/devices/{ids[1]}")).status == 204
    await user.device(name="d4")
    # The limit is per user.
    other = await new_user(node)
    for i in range(3):
        await other.device(name=f"o{i}")


# -- post rate ----------------------------------------------------------------------
async def test_the_rate_script_allows_the_burst_then_says_how_long_to_wait(redis_server) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        # One token per 1,000 s: nothing refills while the test runs.
        limit = RateLimit(redis, rate=0.001, burst=5)
        waits = [await limit.take("k") for _ in range(7)]
        assert waits[:5] == [0.0] * 5
        assert all(990 <= w <= 1000 for w in waits[5:]), waits
        # An idle subject's key lives only until its bucket is full again.
        # (the script rounds the refill time up and adds 1 ms)
        assert 0 < await redis.pttl("k") <= 5 * 1000 * 1000 + 1
        assert await RateLimit(redis, rate=0, burst=0).take("k") == 0.0  # 0 disables
    finally:
        await redis.aclose()


async def _script_calls(redis: Redis) -> int:
    return int((await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_reserve_spares_redis_calls_and_never_lets_more_through(redis_server) -> None:
    """A node may take a few tokens in one call and spend them locally (``reserve``): a
    steady poster costs Redis a fraction of a call per post, and the bucket still lets
    exactly its burst through, however the posts fall between two nodes."""
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.config_resetstat()
        steady = RateLimit(redis, rate=1000, burst=1000, reserve=4)
        assert [await steady.take("busy") for _ in range(40)] == [0.0] * 40
        assert await _script_calls(redis) <= 15  # one call per post without the reserve: 40
        # One token per 1,000 s, a burst of 5, on two nodes at once: 5 in all, whatever the order.
        a, b = (RateLimit(redis, rate=0.001, burst=5, reserve=4) for _ in range(2))
        waits = [await limit.take("shared") for limit in (a, b, a, b, a, b, a, b, a)]
        assert waits.count(0.0) == 5, waits
        assert all(990 <= w <= 1000 for w in waits if w), waits
        # A single node alone: exactly the burst, then the wait (as without a reserve).
        alone = RateLimit(redis, rate=0.001, burst=5, reserve=4)
        waits = [await alone.take("alone") for _ in range(7)]
        assert waits[:5] == [0.0] * 5 and all(990 <= w <= 1000 for w in waits[5:]), waits
    finally:
        await redis.aclose()


async def test_lapsed_reserves_are_dropped_so_memory_follows_the_active_users(redis_server) -> None:
    redis = Redis.from_url(redis_server.url)
    try:
        limit = RateLimit(redis, rate=1000, burst=1000, reserve=4)
        limit._prune_at = 3  # the node keeps PRUNE_AT (10,000) users' reserves before looking
        for user in ("u1", "u2", "u3"):
            await limit.take(user)
        await asyncio.sleep(2.1)  # a second of lease, and a second more: lapsed
        await limit.take("u4")
        assert list(limit._leases) == ["u4"]
    finally:
        await redis.aclose()


async def test_post_rate_is_shared_by_rest_and_ws_on_every_node(stopped) -> None:
    redis = RedisServer().start()
    try:
        data_dir = short_tmpdir()
        # 0.1/s: a burst of one, the next token 10 s later, so nothing refills meanwhile.
        a = start(stopped, "--post-rate", "0.1", data_dir=data_dir, redis_url=redis.url)
        b = start(stopped, "--post-rate", "0.1", data_dir=data_dir, redis_url=redis.url)
        user = await new_user(a)
        phone = await user.device("mobile")
        first = await user.post("one", device=phone)
        # The same user on the other node, over REST: 429 with Retry-After, nothing stored.
        r = await call(b, "POST", "/api/v1/notifications", {"app_name": "x", "title": "two"}, token=user.token,
                       headers={"X-Device-ID": phone})
        assert r.status == 429 and r.body["error"]["code"] == "rate_limited", r.body
        assert 1 <= int(r.headers["Retry-After"]) <= 10
        # And over /ws on the other node: an error frame, the socket stays open.
        ws = await ws_connect(b, user.token, phone)
        await ws.send({"type": "new_notification", "id": "f1", "data": {"app_name": "x", "title": "three"}})
        frame = await ws.recv_type("error")
        assert frame["data"]["code"] == "rate_limited" and frame["data"]["id"] == "f1", frame
        assert 1 <= frame["data"]["retry_after"] <= 10
        await ws.send({"type": "ping"})
        assert (await ws.recv_type("pong"))["type"] == "pong"
        ws.close()
        # Another user is not limited by this one.
        other = await new_user(b)
        await other.post("theirs")
        listed = (await user.call("GET", "/api/v1/notifications")).body["notifications"]
        assert [n["id"] for n in listed] == [first["id"]]
    finally:
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)


# -- outbox bytes --------------------------------------------------------------------
async def test_socket_past_the_outbox_bytes_is_closed_1013_and_resumes_from_its_stream(stopped) -> None:
    limit = 256 * 1024
    node = start(stopped, "--outbox-bytes", str(limit))
    user = await new_user(node)
    phone = await user.device("mobile")
    laptops = [await user.device("web", name=f"laptop{i}") for i in range(3)]
    readers = []
    for device in laptops:
        readers.append(RawWS(node.port, f"token={user.token}&device_id={device}"))
    rss_before = rss_kib(node.proc.pid)
    # 15 MB for each laptop that never reads: more than the kernel's socket buffers hold.
    count, body = 1000, "x" * 15_000
    posted: list[str] = []

    async def post_all() -> None:
        for i in range(count):
            posted.append((await user.post(f"n{i}", device=phone, body=body))["id"])

    async def all_closed() -> bool:
        with open(node.log_path, encoding="utf-8", errors="replace") as f:
            return f.read().count("closing a socket that") >= len(laptops)

    def close_code(raw: RawWS) -> int | None:
        """Read what the server had sent, up to its close frame (None: dropped without one)."""
        raw.sock.settimeout(10)
        try:
            while True:
                opcode, payload = raw._frame()
                if opcode == 0x8:
                    return int.from_bytes(payload[:2], "big")
        except (ConnectionError, OSError):
            return None
        finally:
            raw.sock.close()

    poster = asyncio.ensure_future(post_all())
    await until(all_closed, timeout=60)
    # The readers wake up now, while the posts go on: a client that reads again
    # within Tornado's close timeout (5 s) finds the close frame after the data.
    codes = await asyncio.gather(*(asyncio.to_thread(close_code, raw) for raw in readers))
    await poster
    rss_after = rss_kib(node.proc.pid)
    # Measured: +0.4 MB with this limit; +22 MB with --outbox-bytes 0.
    print(f"\nserver RSS {rss_before} KiB -> {rss_after} KiB after {count} x 15 KB to 3 sockets that never read")
    # Unbounded, each of the 3 sockets would hold ~5 MB (15 less the kernel's ~10) in the server.
    assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)
    assert codes == [1013] * len(readers), codes
    # The client resumes from its stream: everything, once, in order — at its pace,
    # though the backlog is ~60 times the outbox limit.
    ws = await ws_connect(node, user.token, laptops[0])
    got = []
    while len(got) < count:
        frame = await ws.recv_type("new_notification", 20)
        got.append(frame["data"]["id"])
    assert got == posted
    assert ws.close_code is None
    ws.close()


# -- redis maxmemory -------------------------------------------------------------------
# With the post limit on, the full redis refuses the limiter's write first (nothing stored);
# with it off, the fan-out's (stored, then sent by the sweeper once there is room).
@pytest.mark.parametrize("post_rate", ["0", "1000"])
async def test_embedded_redis_full_answers_503_and_drops_nothing_accepted(stopped, post_rate) -> None:
    node = start(stopped, "--redis-maxmemory", "3mb", "--post-rate", post_rate)
    redis = Redis.from_url("unix://" + os.path.join(node.data_dir, "redis.sock"))
    try:
        config = await redis.config_get("maxmemory*")
        assert config["maxmemory-policy"] == "noeviction" and int(config["maxmemory"]) == 3 * 1024 * 1024
        user = await new_user(node)
        phone = await user.device("mobile")
        laptop = await user.device("web")
        accepted, refused = [], []
        for i in range(1000):
            r = await user.call("POST", "/api/v1/notifications",
                                {"app_name": "x", "title": f"n{i}", "body": "y" * 15_000},
                                headers={"X-Device-ID": phone})
            if r.status == 503:
                assert r.body["error"]["code"] == "redis_unavailable", r.body
                refused.append(i)
                if len(refused) >= 3:
                    break
            else:
                assert r.status == 201, r.body
                accepted.append(r.body["id"])
        assert accepted and refused, (len(accepted), refused)
        print(f"\n{len(accepted)} posts of 15 KB accepted before the 3 MB redis refused writes")
        # Nothing was evicted: every accepted notification is still in the laptop's stream.
        assert await redis.xlen(Keys().stream(user.id, laptop)) == len(accepted)
        # The operator raises the limit; the laptop then gets everything accepted, and
        # what was stored before a 503 too (the sweeper finishes its fan-out).
        await redis.config_set("maxmemory", "0")
        ws = await ws_connect(node, user.token, laptop)
        stored = {n["id"] for n in (await user.call("GET", "/api/v1/notifications?limit=200")).body["notifications"]}
        assert set(accepted) <= stored
        got: list[str] = []
        while len(set(got)) < len(stored):
            got.append((await ws.recv_type("new_notification", 20))["data"]["id"])
        assert set(got) == stored and len(got) == len(set(got))
        ws.close()
    finally:
        await redis.config_set("maxmemory", "0")
        await redis.aclose()


# -- stream expiry ------------------------------------------------------------------------
async def test_streams_expire_7_days_after_their_last_append_and_a_reader_is_told(stopped) -> None:
    node = start(stopped)
    redis = Redis.from_url("unix://" + os.path.join(node.data_dir, "redis.sock"))
    keys = Keys()
    try:
        user = await new_user(node)
        phone = await user.device("mobile")
        laptop = await user.device("web")
        ws = await ws_connect(node, user.token, laptop)
        await user.post("first", device=phone)
        await ws.recv_type("new_notification")
        week = 7 * 24 * 3600 * 1000
        for key in (keys.stream(user.id, laptop), keys.last(user.id, laptop)):
            assert week - 60_000 < await redis.pttl(key) <= week, key
        # The position the laptop confirmed is saved (each second, after its pong).
        await until(lambda: redis.exists(keys.cursor(user.id, laptop)))
        ws.close()
        await ws.wait_closed()
        # What the expiry does a week later, done now: the stream and its last id are gone.
        await redis.delete(keys.stream(user.id, laptop), keys.last(user.id, laptop))
        again = await ws_connect(node, user.token, laptop)
        frame = await again.recv_type("sync_required")
        assert frame["data"]["reason"] == "history_trimmed"
        # And the stream starts over: the next post arrives.
        await user.post("second", device=phone)
        assert (await again.recv_type("new_notification"))["data"]["title"] == "second"
        again.close()
    finally:
        await redis.aclose()


async def test_expired_notification_is_gone_from_every_rest_answer(stopped) -> None:
    node = start(stopped)
    user = await new_user(node)
    phone = await user.device("mobile")
    kept = await user.post("kept code 1", device=phone)
    gone = await user.post("gone code 2", device=phone)
    # Its expiry reached, in the store itself (the server sets 7 days): no purge runs.
    with sqlite3.connect(os.path.join(node.data_dir, "notisync.sqlite3")) as db:
        db.execute("UPDATE notifications SET expires_at = '2000-01-01T00:00:00.000+00:00' WHERE id = ?",
                   (gone["id"],))
    assert (await user.call("GET", f"/api/v1/notifications/{gone['id']}")).status == 404
    for query in ("", "?q=code", "?app_name=Slack"):
        listed = (await user.call("GET", f"/api/v1/notifications{query}")).body["notifications"]
        assert [n["id"] for n in listed] == [kept["id"]], query
    r = await user.call("PUT", f"/api/v1/notifications/{gone['id']}/action", {"action": "read"})
    assert r.status == 404
