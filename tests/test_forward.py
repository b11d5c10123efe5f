"""``notisync forward`` (the Termux forwarder) against a real server, with a
stand-in ``termux-notification-list`` first on PATH that replays recorded
outputs (tests/fixtures/termux/; the real tool exists only on Android).

Each notification reaches the other devices once, a changed one is re-posted
under the same source_key, a removed one is dismissed, and neither a restart,
a dead server for a cycle, nor a lost answer makes a duplicate."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
from typing import Any

import pytest

from tests.harness import free_port, new_user, ws_connect
from tests.cli_helpers import Cli, own_node

API = "/api/v1"
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "termux")


class Phone:
    """The stand-in's control file and the forwarder's environment."""

    def __init__(self, tmp: Any, cli: Cli, key: str) -> None:
        self.cli = cli
        self.bin = str(tmp / "bin")
        os.makedirs(self.bin)
        stand_in = os.path.join(self.bin, "termux-notification-list")
        shutil.copy(os.path.join(FIXTURES, "termux-notification-list"), stand_in)
        os.chmod(stand_in, stat.S_IRWXU)
        self.control = str(tmp / "replay")
        self.key_file = str(tmp / "phone.key")
        with open(self.key_file, "w", encoding="utf-8") as f:
            f.write(key + "\n")
        self.show("")

    def show(self, fixture: str) -> None:
        with open(self.control, "w", encoding="utf-8") as f:
            f.write(os.path.join(FIXTURES, fixture) if fixture else "")

    def env(self) -> dict[str, str]:
        return self.cli.env(PATH=f"{self.bin}:{os.environ['PATH']}", TERMUX_REPLAY=self.control)

    async def forward(self, *args: str, server: str | None = None):
        run_cli = self.cli if server is None else Cli(server, self.cli.config_dir, self.cli.procs)
        return await run_cli.run("forward", "--once", "--key-file", self.key_file, *args, env=self.env())

    def state(self) -> dict[str, Any]:
        with open(os.path.join(self.cli.config_dir, "forward.json"), encoding="utf-8") as f:
            return json.load(f)


async def phone_with_key(user) -> tuple[str, str]:
    phone = await user.device("mobile", "Pixel")
    r = await user.call("POST", f"{API}/devices/{phone}/api-keys", {"name": "termux"})
    assert r.status == 201, r.body
    return phone, r.body["key"]


async def everything(user) -> dict[str, dict[str, Any]]:
    r = await user.call("GET", f"{API}/notifications?limit=200")
    assert r.status == 200, r.body
    return {n["id"]: n for n in r.body["notifications"]}


async def new_ones(ws, count: int) -> list[dict[str, Any]]:
    frames = [(await ws.recv_type("new_notification", timeout=10))["data"] for _ in range(count)]
    await ws.expect_silence(0.5, ignore=("device_status", "notification_updated", "notification_sync"))
    return frames


@pytest.fixture
async def cli(node, tmp_path):
    c = Cli(node.base, str(tmp_path / "config"))
    yield c
    await c.kill_all()


async def test_forward_posts_updates_dismisses_and_never_duplicates(node, cli, tmp_path) -> None:
    user = await new_user(node)
    phone_id, key = await phone_with_key(user)
    laptop = await user.device("desktop", "Laptop")
    ws = await ws_connect(node, user.token, laptop)
    phone = Phone(tmp_path, cli, key)

    phone.show("01-start.json")
    out = (await phone.forward()).ok().out.splitlines()
    assert out == ["posted WhatsApp: Anna", "posted Gmail: Your invoice #4512"]  # Termux's own is skipped
    arrived = await new_ones(ws, 2)
    assert sorted((n["app_name"], n["title"]) for n in arrived) == [("Gmail", "Your invoice #4512"), ("WhatsApp", "Anna")]
    assert all(n["source_device_id"] == phone_id for n in arrived)
    whatsapp = next(n["id"] for n in arrived if n["app_name"] == "WhatsApp")
    # a restart with the phone unchanged: nothing to do
    assert (await phone.forward()).ok().out == ""
    await ws.expect_silence(0.5)

    phone.show("02-update-and-new.json")  # WhatsApp's text changed, a calendar reminder came
    out = (await phone.forward()).ok().out.splitlines()
    assert out == ["updated WhatsApp: Anna (2 messages)", "posted Calendar: Dentist"]
    assert [n["title"] for n in await new_ones(ws, 1)] == ["Dentist"]
    stored = await everything(user)
    assert len(stored) == 3 and whatsapp in stored  # the update kept the notification's id
    assert phone.state()["known"]["0|com.whatsapp|1|null|10134"]["id"] == whatsapp

    phone.show("03-dismissed.json")  # WhatsApp and Gmail were swiped away on the phone
    out = (await phone.forward()).ok().out.splitlines()
    assert sorted(out) == ["dismissed 0|com.google.android.gm|0|com.google.android.gm:notification:inbox|10112",
                           "dismissed 0|com.whatsapp|1|null|10134"]
    syncs = [(await ws.recv_type("notification_sync", timeout=10))["data"] for _ in range(2)]
    assert {s["notification_id"] for s in syncs} == {n["id"] for n in arrived} and all(s["is_dismissed"] for s in syncs)
    dismissed = {i for i, n in (await everything(user)).items() if n["is_dismissed"]}
    assert dismissed == {n["id"] for n in arrived}

    # the network drops for a cycle while new ones arrive: nothing is recorded as sent
    phone.show("04-after-the-drop.json")
    before = phone.state()
    dead = f"http://127.0.0.1:{free_port()}"
    error = (await phone.forward(server=dead)).one_line_error()
    assert "cannot reach" in error and "retries" in error
    assert phone.state() == before
    out = (await phone.forward()).ok().out.splitlines()
    assert out == ["posted Telegram: Ben", "posted Messages: +44 7700 900123"]
    assert sorted(n["app_name"] for n in await new_ones(ws, 2)) == ["Messages", "Telegram"]

    # a post whose answer was lost (accepted, but not in the state file): the retry is no duplicate
    state = phone.state()
    del state["known"]["0|org.telegram.messenger|2|null|10141"]
    with open(os.path.join(cli.config_dir, "forward.json"), "w", encoding="utf-8") as f:
        json.dump(state, f)
    assert (await phone.forward()).ok().out.splitlines() == ["posted Telegram: Ben"]
    await ws.expect_silence(1.0)
    # each notification once (WhatsApp's title is the new one where the server updates in place)
    titles = sorted("Anna" if n["title"].startswith("Anna") else n["title"] for n in (await everything(user)).values())
    assert titles == sorted(["Anna", "Your invoice #4512", "Dentist", "Ben", "+44 7700 900123"])
    ws.close()


async def test_forward_fails_clearly_without_a_key_or_the_tool(node, cli, tmp_path) -> None:
    user = await new_user(node)
    _, key = await phone_with_key(user)
    phone = Phone(tmp_path, cli, key)
    error = (await cli.run("forward", "--once", env=phone.env())).one_line_error()
    assert "no API key" in error
    error = (await phone.forward()).one_line_error()  # the stand-in fails, as without Termux:API
    assert "termux-notification-list" in error
    phone.show("01-start.json")
    r = await user.call("GET", f"{API}/devices")
    key_id = (await user.call("GET", f"{API}/devices/{r.body['devices'][0]['id']}/api-keys")).body["api_keys"][0]["id"]
    assert (await user.call("DELETE", f"{API}/devices/{r.body['devices'][0]['id']}/api-keys/{key_id}")).status == 204
    # one node: the revocation is effective at once
    error = (await phone.forward()).one_line_error()
    assert "API key was refused" in error


async def test_forward_keeps_running_through_a_server_restart(tmp_path) -> None:
    async with own_node(tmp_path) as (own, cli):
        user = await new_user(own)
        _, key = await phone_with_key(user)
        phone = Phone(tmp_path, cli, key)
        phone.show("01-start.json")
        proc = await cli.spawn("forward", "--interval", "0.2", "--key-file", phone.key_file, env=phone.env())
        assert proc.stdout is not None and proc.stderr is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().startswith("posted WhatsApp")
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().startswith("posted Gmail")
        assert own.stop() == 0
        phone.show("04-after-the-drop.json")  # while the server is away
        assert "retrying" in (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        own.start()
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip() for _ in range(5)]
        assert sorted(lines) == sorted([
            "posted Calendar: Dentist", "posted Telegram: Ben", "posted Messages: +44 7700 900123",
            "dismissed 0|com.whatsapp|1|null|10134",
            "dismissed 0|com.google.android.gm|0|com.google.android.gm:notification:inbox|10112"])
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        stored = await everything(user)
        assert sorted(n["app_name"] for n in stored.values()) == [
            "Calendar", "Gmail", "Messages", "Telegram", "WhatsApp"]  # each once
        assert sum(n["is_dismissed"] for n in stored.values()) == 2
