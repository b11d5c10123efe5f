"""Device preferences on a real server: validation, blocked and muted apps, quiet hours that switch
``silent`` on and off at the window's edges in the device's time zone (an injected clock, no
waiting), and sync_dismissals."""
from __future__ import annotations

import os
import shutil
from typing import Any, Iterator

import pytest

from tests.harness import Node, new_user, short_tmpdir, ws_connect
from tests.test_rules import titles_until

API = "/api/v1"


@pytest.fixture(scope="module")
def clocked() -> Iterator[tuple[Node, str]]:
    """A node whose rules/preferences clock reads a file the test writes (NOTISYNC_TEST_CLOCK)."""
    data_dir = short_tmpdir()
    path = os.path.join(data_dir, "clock")
    with open(path, "w") as f:
        f.write("2026-11-30T12:00:00Z")
    n = Node(data_dir=data_dir, env={"NOTISYNC_TEST_CLOCK": path}).start()
    yield n, path
    assert n.stop() == 0, n.log()
    shutil.rmtree(data_dir, ignore_errors=True)


def set_clock(path: str, instant: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(instant)
    os.replace(tmp, path)  # never half-written


async def test_defaults_partial_update_and_validation(node: Node) -> None:
    user, other = await new_user(node), await new_user(node)
    laptop = await user.device("desktop")
    url = f"{API}/devices/{laptop}/preferences"
    r = await user.call("GET", url)
    assert r.status == 200 and r.body == {"quiet_hours": None, "muted_apps": [], "blocked_apps": [],
                                          "sync_dismissals": True}
    r = await user.call("PUT", url, {"muted_apps": ["Slack"]})
    assert r.status == 200 and r.body["muted_apps"] == ["Slack"] and r.body["sync_dismissals"] is True
    r = await user.call("PUT", url, {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Paris",
                                                     "days": [0, 6]}})
    assert r.body["muted_apps"] == ["Slack"] and r.body["quiet_hours"]["days"] == [0, 6]
    assert (await user.call("GET", url)).body == r.body
    r = await user.call("PUT", url, {"quiet_hours": {"start": "24:00", "end": "7", "timezone": "Mars/Olympus",
                                                     "days": [7]},
                                     "blocked_apps": "Slack", "sync_dismissals": "maybe"})
    assert r.status == 400
    assert set(r.body["error"]["fields"]) == {"quiet_hours.start", "quiet_hours.end", "quiet_hours.timezone",
                                              "quiet_hours.days.0", "blocked_apps", "sync_dismissals"}
    for tz in ("../../etc/passwd", "", "x" * 100):
        r = await user.call("PUT", url, {"quiet_hours": {"start": "01:00", "end": "02:00", "timezone": tz}})
        assert r.status == 400 and "quiet_hours.timezone" in r.body["error"]["fields"], tz
    assert (await user.call("PUT", url, {})).status == 400
    assert (await user.call("PUT", url, {"quiet_hours": None})).body["quiet_hours"] is None
    assert (await other.call("GET", url)).status == 404
    assert (await other.call("PUT", url, {"muted_apps": []})).status == 404


async def test_blocked_muted_and_a_device_catching_up(node: Node) -> None:
    user = await new_user(node)
    phone, laptop, tablet = await user.device("mobile"), await user.device("desktop"), await user.device("mobile")
    await user.call("PUT", f"{API}/devices/{laptop}/preferences", {"blocked_apps": ["Tik*"], "muted_apps": ["mail"]})
    ws_tablet = await ws_connect(node, user.token, tablet)
    for title, app in (("t1", "TikTok"), ("m1", "Mail"), ("s1", "Signal")):
        await user.post(title, device=phone, app_name=app)
    got = await titles_until(ws_tablet, "s1")
    assert [(n["title"], n["silent"]) for n in got] == [("t1", False), ("m1", False), ("s1", False)]
    ws_laptop = await ws_connect(node, user.token, laptop)  # offline until now: its stream as shaped then
    got = await titles_until(ws_laptop, "s1")
    assert [(n["title"], n["silent"]) for n in got] == [("m1", True), ("s1", False)]
    # Live too, and a preference change applies from the next notification on.
    await user.call("PUT", f"{API}/devices/{laptop}/preferences", {"blocked_apps": []})
    await user.post("t2", device=phone, app_name="TikTok")
    assert [n["title"] for n in await titles_until(ws_laptop, "t2")] == ["t2"]
    ws_tablet.close()
    ws_laptop.close()


async def test_quiet_hours_follow_the_devices_zone_days_and_midnight(clocked: tuple[Node, str]) -> None:
    node, clock = clocked
    user = await new_user(node)
    phone, laptop = await user.device("mobile"), await user.device("desktop")
    # 22:00-07:00 in Paris (UTC+1 in winter), windows starting Mondays only.
    r = await user.call("PUT", f"{API}/devices/{laptop}/preferences", {"quiet_hours": {
        "start": "22:00", "end": "07:00", "timezone": "Europe/Paris", "days": [0]}})
    assert r.status == 200, r.body
    ws = await ws_connect(node, user.token, laptop)
    cases = [
        ("2026-11-30T20:59:59Z", False),  # Monday 21:59:59 Paris
        ("2026-11-30T21:00:00Z", True),   # Monday 22:00: the window opens
        ("2026-11-30T23:30:00Z", True),   # past midnight: Tuesday 00:30, still Monday's window
        ("2026-12-01T05:59:00Z", True),   # Tuesday 06:59
        ("2026-12-01T06:00:00Z", False),  # Tuesday 07:00: closed
        ("2026-12-01T21:30:00Z", False),  # Tuesday 22:30: no window starts on Tuesday
        ("2026-12-07T21:00:00Z", True),   # next Monday 22:00
    ]
    for i, (instant, silent) in enumerate(cases):
        set_clock(clock, instant)
        await user.post(f"q{i}", device=phone, app_name="Mail")
        got = (await ws.recv_type("new_notification"))["data"]
        assert (got["title"], got["silent"]) == (f"q{i}", silent), instant
    ws.close()


async def test_sync_dismissals_off_skips_only_dismissals_made_elsewhere(node: Node) -> None:
    user = await new_user(node)
    phone, laptop, tablet = await user.device("mobile"), await user.device("desktop"), await user.device("mobile")
    await user.call("PUT", f"{API}/devices/{laptop}/preferences", {"sync_dismissals": False})
    ws_laptop = await ws_connect(node, user.token, laptop)
    ws_tablet = await ws_connect(node, user.token, tablet)
    n1, n2 = await user.post("a", device=phone), await user.post("b", device=phone)

    async def act(nid: str, action: str) -> None:
        r = await user.call("PUT", f"{API}/notifications/{nid}/action", {"action": action, "device_id": phone})
        assert r.status == 200, r.body

    await act(n1["id"], "dismissed")
    await act(n2["id"], "read")
    syncs: list[dict[str, Any]] = [(await ws_tablet.recv_type("notification_sync"))["data"] for _ in range(2)]
    assert [s["notification_id"] for s in syncs] == [n1["id"], n2["id"]]
    got = (await ws_laptop.recv_type("notification_sync"))["data"]
    assert got["notification_id"] == n2["id"]  # the read came; the dismissal did not
    ws_laptop.close()
    ws_tablet.close()
