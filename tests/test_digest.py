"""The digest on a real server: the summary route, the schedule route, and the scheduled daily
digest sent exactly once with two nodes running and one restarted across the scheduled minute,
then caught up by a node starting later the same day (injected clock, shared by the nodes)."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil

from tests.harness import Node, User, new_user, short_tmpdir, ws_connect
from tests.test_preferences import set_clock

API = "/api/v1"


async def test_summary_and_schedule_routes(node: Node) -> None:
    user = await new_user(node)
    phone = await user.device("mobile")
    await user.device("desktop")
    posted = [await user.post("a", device=phone, app_name="Slack", priority=2),
              await user.post("b", device=phone, app_name="Slack"),
              await user.post("c", device=phone, app_name="Temu")]
    await user.call("PUT", f"{API}/notifications/{posted[1]['id']}/action", {"action": "read"})
    today = dt.datetime.now(dt.timezone.utc).date()
    r = await user.call("GET", f"{API}/digest?date={today}&timezone=UTC")
    assert r.status == 200, r.body
    d = r.body
    assert (d["date"], d["timezone"], d["total"], d["unread"]) == (str(today), "UTC", 3, 2)
    assert d["by_app"] == [{"app_name": "Slack", "count": 2, "unread": 1}, {"app_name": "Temu", "count": 1, "unread": 1}]
    assert d["by_category"] == {"Work": 2, "Personal": 0, "Junk": 1}
    assert [n["title"] for n in d["top"]] == ["a", "c"]  # unread, highest priority first
    r = await user.call("GET", f"{API}/digest?date={today - dt.timedelta(days=2)}&timezone=Pacific/Kiritimati")
    assert r.status == 200 and r.body["total"] == 0
    for bad in ("date=2026-13-45", "date=yesterday", "timezone=Nowhere/Land", "date=9999-12-31",
                "date=0001-01-01&timezone=Asia/Tokyo"):
        r = await user.call("GET", f"{API}/digest?{bad}")
        assert r.status == 400 and r.body["error"]["fields"], bad
    r = await user.call("GET", f"{API}/digest/schedule")
    assert r.body == {"enabled": False, "time": "08:00", "timezone": "UTC", "device_ids": None}
    r = await user.call("PUT", f"{API}/digest/schedule", {"enabled": True, "time": "7:5", "timezone": "X"})
    assert r.status == 400 and set(r.body["error"]["fields"]) == {"time", "timezone"}
    r = await user.call("PUT", f"{API}/digest/schedule", {"enabled": True, "time": "07:30", "timezone": "UTC",
                                                          "device_ids": ["not-mine"]})
    assert r.status == 400 and "device_ids" in r.body["error"]["fields"]
    r = await user.call("PUT", f"{API}/digest/schedule", {"enabled": False, "time": "07:30",
                                                          "timezone": "Asia/Tokyo"})
    assert r.status == 200 and (await user.call("GET", f"{API}/digest/schedule")).body == r.body


async def digests(user: User) -> list[dict]:
    r = await user.call("GET", f"{API}/notifications?app_name=NotiSync&limit=50")
    return [n for n in r.body["notifications"] if n["title"] == "Daily digest"]


async def test_scheduled_digest_once_across_nodes_and_restarts_then_caught_up(redis_server) -> None:
    data_dir = short_tmpdir()
    clock = os.path.join(data_dir, "clock")
    # The injected day is tomorrow (UTC), so "yesterday" is today: what we post now is in it.
    tomorrow = dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)
    set_clock(clock, f"{tomorrow}T07:58:00Z")
    env = {"NOTISYNC_TEST_CLOCK": clock}
    extra = ["--digest-interval", "0.3"]
    a, b = (Node(data_dir=data_dir, redis_url=redis_server.url, env=env, extra=extra).start() for _ in range(2))
    try:
        user = await new_user(a)
        phone, laptop = await user.device("mobile"), await user.device("desktop")
        await user.post("yesterday's news", device=phone, app_name="Slack")
        r = await user.call("PUT", f"{API}/digest/schedule", {"enabled": True, "time": "08:00", "timezone": "UTC"})
        assert r.status == 200, r.body
        ws = await ws_connect(a, user.token, laptop)
        await ws.recv_type("new_notification")  # yesterday's news
        b.stop()  # down across the scheduled minute
        set_clock(clock, f"{tomorrow}T08:00:30Z")
        got = (await ws.recv_type("new_notification", timeout=30))["data"]
        assert (got["app_name"], got["title"]) == ("NotiSync", "Daily digest")
        assert "1 notifications" in got["body"] and "Slack 1" in got["body"]
        b.start()  # comes back the same day: finds today's digest already sent
        on_b = User(b, user.email, user.password, user.id, user.token, user.refresh_token)
        for _ in range(20):  # many of both nodes' rounds (0.3 s each)
            assert len(await digests(on_b)) == 1
            await asyncio.sleep(0.2)
        await ws.expect_silence(0.5)
        ws.close()
        # Every node down when the next day's digest is due; one starts later that day.
        a.stop()
        b.stop()
        set_clock(clock, f"{tomorrow + dt.timedelta(days=1)}T15:00:00Z")
        b.start()
        loop = asyncio.get_running_loop()
        start = loop.time()
        while len(await digests(on_b)) < 2:
            assert loop.time() - start < 30, b.log()
            await asyncio.sleep(0.2)
        a.start()
        for _ in range(10):
            assert len(await digests(on_b)) == 2
            await asyncio.sleep(0.2)
    finally:
        for n in (a, b):
            if n.proc and n.proc.poll() is None:
                assert n.stop() == 0, n.log()
        shutil.rmtree(data_dir, ignore_errors=True)
