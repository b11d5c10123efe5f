"""``notisync desktop`` against a real server and a real notification daemon.

Each test starts its own Xvfb, session D-Bus and dunst (tests/desktop_env.py;
``.ci/run`` installs them), runs the real ``notisync desktop`` command on
them, and checks what dunst shows and what the server and the user's other
devices see: pop-ups appear, closing one dismisses it everywhere, dismissing
elsewhere withdraws it, an update replaces it, its buttons reach the phone,
and neither a server restart nor an agent restart shows anything twice.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from typing import Any, Callable, Iterator

import pytest

from tests.cli_helpers import Cli
from tests.desktop_env import Desktop, missing_tools
from tests.harness import Node, User, new_user, ws_connect
from tests.test_cli import rest_notification

API = "/api/v1"


@pytest.fixture
def desktop() -> Iterator[Desktop]:
    missing = missing_tools()
    assert not missing, f"install {missing} (Debian: dunst xvfb dbus-x11; .ci/run does)"
    d = Desktop().start()
    yield d
    d.stop()


async def until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll (the machine is shared and slow at times) until ``condition()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def start_agent(cli: Cli, desktop: Desktop, *args: str) -> asyncio.subprocess.Process:
    return await cli.spawn("desktop", *args, env=cli.env(**desktop.env, NOTISYNC_DEBUG="1"))


async def stop_agent(proc: asyncio.subprocess.Process) -> str:
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 20) == 0
    assert proc.stderr is not None
    return (await proc.stderr.read()).decode()


async def phone_post(user: User, phone: str, **body: Any) -> dict[str, Any]:
    r = await user.call("POST", f"{API}/notifications", {"app_name": "Signal", **body},
                        headers={"X-Device-ID": phone})
    assert r.status in (200, 201), r.body
    return r.body


def summaries(desktop: Desktop) -> list[str]:
    return [h["summary"] for h in desktop.history()]


async def test_popups_two_way(node, cli, user, desktop):
    phone, tablet = await user.device("mobile"), await user.device("web")
    me = cli.session()["device_id"]
    phone_ws, tablet_ws = await ws_connect(node, user.token, phone), await ws_connect(node, user.token, tablet)
    agent = await start_agent(cli, desktop)
    # wait until the agent's socket is up (its device shows online), so it sees posts live
    await until(lambda: _online(user, me), "the agent to connect")

    # 1. a phone post appears; closing it dismisses it on the server and on the tablet
    a = await phone_post(user, phone, title="Ann", body="lunch?")
    await until(lambda: desktop.displayed() == 1, "the pop-up")
    desktop.close_top()
    sync = await tablet_ws.recv_type("notification_sync", timeout=30)
    while sync["data"]["notification_id"] != a["id"]:
        sync = await tablet_ws.recv_type("notification_sync", timeout=30)
    assert sync["data"]["is_dismissed"] is True and sync["data"]["source_device"] == me
    assert (await rest_notification(user, a["id"]))["is_dismissed"] is True
    assert summaries(desktop) == ["Signal: Ann"]

    # 2. dismissed on the tablet: the pop-up goes away
    b = await phone_post(user, phone, title="Bob", body="call me")
    await until(lambda: desktop.displayed() == 1, "Bob's pop-up")
    r = await user.call("PUT", f"{API}/notifications/{b['id']}/action", {"action": "dismissed", "device_id": tablet})
    assert r.status == 200
    await until(lambda: desktop.displayed() == 0, "Bob's pop-up withdrawn")
    assert summaries(desktop)[0] == "Signal: Bob"
    assert (await rest_notification(user, b["id"]))["is_dismissed"] is True  # not undone by the withdrawal

    # 3. an update replaces it in place: the old content leaves, one pop-up with the new content stays
    chat = {"title": "Cat", "source_key": "chat-9"}
    c = await phone_post(user, phone, body="one", **chat)
    await until(lambda: desktop.displayed() == 1, "Cat's pop-up")
    c2 = await phone_post(user, phone, body="one\ntwo", **chat)
    assert c2["id"] == c["id"] and c2["version"] == 2
    await until(lambda: len(desktop.history()) == 3, "the old version closed")
    assert desktop.history()[0]["body"] == "one" and desktop.displayed() == 1
    assert (await rest_notification(user, c["id"]))["is_dismissed"] is False  # replaced, not dismissed
    desktop.close_top()
    await until(lambda: len(desktop.history()) == 4, "the new version closed")
    assert desktop.history()[0]["body"] == "one\ntwo"

    # 4. a button of the pop-up reaches the phone's socket as action_invoked
    actions = [{"id": "ok", "label": "Sounds good", "type": "button"},
               {"id": "reply", "label": "Reply", "type": "reply"}]
    d = await phone_post(user, phone, title="Dan", actions=actions)
    await until(lambda: desktop.displayed() == 1, "Dan's pop-up")
    menu = desktop.press("Sounds good")
    assert any(line.startswith("#Sounds good ") for line in menu), menu
    invoked = await phone_ws.recv_type("action_invoked", timeout=30)
    assert invoked["data"] == {"notification_id": d["id"], "action_id": "ok", "device_id": me}

    await until(lambda: desktop.displayed() == 0, "the pop-up closed after its button")
    # 5. clicking the pop-up sends clicked (marks it read)
    e = await phone_post(user, phone, title="Eve", priority=-1)
    await until(lambda: desktop.displayed() == 1, "Eve's pop-up alone")
    desktop.click_top()
    await until(lambda: _is(user, e["id"], "is_read"), "Eve read on the server")
    await until(lambda: desktop.displayed() == 0, "the pop-up closed after the click")
    assert desktop.history()[0]["message"].startswith("[low] Signal: Eve")  # priority below 0: low urgency
    assert desktop.history()[1]["message"].startswith("[normal] Signal: Dan")

    assert "Traceback" not in await stop_agent(agent)
    for ws in (phone_ws, tablet_ws):
        ws.close()


async def test_backlog_collapses_into_one_summary(node, cli, user, desktop):
    phone = await user.device("mobile")
    for i in range(8):
        await phone_post(user, phone, title=f"missed {i}")
    seen = await phone_post(user, phone, title="read on the phone")  # read there: not missed, never shown
    r = await user.call("PUT", f"{API}/notifications/{seen['id']}/action", {"action": "read", "device_id": phone})
    assert r.status == 200
    agent = await start_agent(cli, desktop)
    await until(lambda: desktop.displayed() == 1, "the summary pop-up")
    live = await phone_post(user, phone, title="live one")
    await until(lambda: desktop.displayed() == 2, "the live pop-up")
    await asyncio.sleep(2)  # the replay of the 9 must not add pop-ups
    assert desktop.displayed() == 2 and desktop.history() == []
    desktop.close_top()  # the newest: the live one
    await until(lambda: len(desktop.history()) == 1, "the live one closed")
    desktop.close_top()
    await until(lambda: len(desktop.history()) == 2, "the summary closed")
    assert [h["summary"] for h in desktop.history()] == ["8 notifications while you were away", "Signal: live one"]
    assert (await rest_notification(user, live["id"]))["is_dismissed"] is True
    await stop_agent(agent)


@pytest.fixture
def own_node() -> Iterator[Node]:
    n = Node().start()
    yield n
    n.stop()
    shutil.rmtree(n.data_dir, ignore_errors=True)


async def test_server_and_agent_restarts_show_nothing_twice(own_node, tmp_path, desktop):
    node = own_node
    user = await new_user(node)
    cli = Cli(node.base, str(tmp_path / "config"))
    try:
        await _restarts(node, user, cli, desktop)
    finally:
        for proc in cli.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def _restarts(node: Node, user: User, cli: Cli, desktop: Desktop) -> None:
    (await cli.run("login", "--email", user.email, "--password", user.password)).ok()
    me = cli.session()["device_id"]
    phone = await user.device("mobile")
    agent = await start_agent(cli, desktop)
    await until(lambda: _online(user, me), "the agent to connect")
    first = [await phone_post(user, phone, title=f"before {i}") for i in range(2)]
    await until(lambda: desktop.displayed() == 2, "two pop-ups")

    # the server restarts under the agent; meanwhile a pop-up is closed (sent once it is back)
    await asyncio.to_thread(node.stop)
    desktop.close_top()
    await until(lambda: len(desktop.history()) == 1, "the pop-up closed")
    closed = next(n for n in first if f"Signal: {n['title']}" == desktop.history()[0]["summary"])
    await asyncio.to_thread(node.start)
    await until(lambda: _is(user, closed["id"], "is_dismissed"), "the close sent after the restart", 60)
    after = await phone_post(user, phone, title="after restart")
    await until(lambda: desktop.displayed() == 2, "the post after the restart")
    await asyncio.sleep(2)
    assert desktop.displayed() == 2 and len(desktop.history()) == 1  # 3 shown in all, each once

    # the agent itself restarts: it resumes from its stream position and shows nothing again
    await stop_agent(agent)
    agent = await start_agent(cli, desktop)
    await until(lambda: _online(user, me), "the agent to reconnect")
    last = await phone_post(user, phone, title="after agent restart")
    await until(lambda: desktop.displayed() == 3, "the newest pop-up")
    await asyncio.sleep(2)
    assert desktop.displayed() == 3 and len(desktop.history()) == 1
    with open(os.path.join(cli.config_dir, "desktop.json")) as f:
        shown = json.load(f)[me]["shown"]
    assert set(shown) == {first[0]["id"], first[1]["id"], after["id"], last["id"]}
    await stop_agent(agent)


async def _online(user: User, device_id: str) -> bool:
    r = await user.call("GET", f"{API}/devices")
    return any(d["id"] == device_id and d["status"] == "online" for d in r.body["devices"])


async def _is(user: User, notification_id: str, flag: str) -> bool:
    return bool((await rest_notification(user, notification_id))[flag])


def test_login_start_files_are_valid(tmp_path) -> None:
    """deploy/desktop/: the systemd user unit verifies, the autostart entry runs the agent."""
    import configparser
    import subprocess
    import sys

    from tests.harness import ROOT

    folder = os.path.join(ROOT, "deploy", "desktop")
    analyze = shutil.which("systemd-analyze")
    assert analyze, "apt-get install systemd (.ci/run does)"
    with open(os.path.join(folder, "notisync-desktop.service")) as f:
        unit = f.read()
    assert "ExecStart=%h/.local/bin/notisync desktop" in unit and "Restart=on-failure" in unit
    # verify checks that ExecStart exists: point it at this checkout's console script.
    script = os.path.join(os.path.dirname(sys.executable), "notisync")
    path = tmp_path / "notisync-desktop.service"
    path.write_text(unit.replace("%h/.local/bin/notisync", script))
    run = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True)
    assert run.returncode == 0 and not (run.stdout + run.stderr).strip(), run.stdout + run.stderr
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment, method-assign]
    entry.read(os.path.join(folder, "notisync-desktop.desktop"))
    desktop_entry = entry["Desktop Entry"]
    assert desktop_entry["Type"] == "Application" and desktop_entry["Exec"] == "notisync desktop"
    assert desktop_entry["Terminal"] == "false"


class RecordingNotifier:
    """The pop-up surface of a notification server with an inline reply field (KDE's has one; dunst
    has not), standing in for desktop-notifier's DesktopNotifier: it keeps what it was asked to show."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.cleared: list[str] = []

    async def get_capabilities(self) -> frozenset[Any]:
        from desktop_notifier import Capability

        return frozenset({Capability.BUTTONS, Capability.REPLY_FIELD, Capability.ON_CLICKED})

    async def send_notification(self, notification: Any) -> str:
        self.sent.append(notification)
        return notification.identifier

    async def clear(self, identifier: str) -> None:
        self.cleared.append(identifier)


async def test_reply_field_sends_the_text_to_the_phone(node, cli, user) -> None:
    from notisync.client.api import NotiSyncClient
    from notisync.client.desktop import DesktopAgent

    phone = await user.device("mobile")
    phone_ws = await ws_connect(node, user.token, phone)
    n = await phone_post(user, phone, title="Ann", actions=[{"id": "r", "label": "Answer", "type": "reply"},
                                                            {"id": "ok", "label": "OK", "type": "button"}])
    notifier = RecordingNotifier()
    agent = DesktopAgent(NotiSyncClient(node.base, cli.config_dir), notifier)
    agent._capabilities = await notifier.get_capabilities()
    await agent.handle({"type": "new_notification", "id": "1-1", "data": n})
    await agent.handle({"type": "new_notification", "id": "1-1", "data": n})  # a repeat shows nothing
    assert len(notifier.sent) == 1
    popup = notifier.sent[0]
    assert popup.reply_field.title == "Answer" and [b.title for b in popup.buttons] == ["OK"]
    popup.reply_field.on_replied("see you at 1")
    await until(lambda: agent.state.outbox, "the reply queued")
    await agent.send_outbox()
    frame = await phone_ws.recv_type("action_invoked", timeout=10)
    assert frame["data"] == {"notification_id": n["id"], "action_id": "r", "reply_text": "see you at 1",
                             "device_id": cli.session()["device_id"]}
    assert agent.state.outbox == []
    phone_ws.close()
