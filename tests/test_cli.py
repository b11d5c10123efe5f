"""The real ``notisync`` command, in subprocesses, against a real server.

Every test has its own config dir and user; ``watch`` output is read line by
line with timeouts, and every subprocess is killed at teardown.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import sys
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.cli_helpers import Result, own_node
from tests.harness import ROOT, User, call, free_port, new_user, ws_connect

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def rest_notification(user: User, notification_id: str) -> dict[str, Any]:
    r = await user.call("GET", f"/api/v1/notifications/{notification_id}")
    assert r.status == 200, r.body
    return r.body


# -- accounts and config ------------------------------------------------------------

async def test_register_and_login_keep_tokens_private(node, cli):
    email = f"c{uuid.uuid4().hex[:10]}@example.com"
    out = (await cli.run("register", "--email", email, "--password", "correct horse")).ok().out
    assert email in out
    (await cli.run("login", "--email", email, "--password", "correct horse")).ok()
    assert stat.S_IMODE(os.stat(cli.config_dir).st_mode) == 0o700
    for name in os.listdir(cli.config_dir):
        assert stat.S_IMODE(os.stat(os.path.join(cli.config_dir, name)).st_mode) == 0o600, name
    session = cli.session()
    assert session["access_token"] and session["refresh_token"] and UUID_RE.match(session["device_id"])
    # A second login (password from the environment) reuses the same device.
    (await cli.run("login", "--email", email, env=cli.env(NOTISYNC_PASSWORD="correct horse"))).ok()
    assert cli.session()["device_id"] == session["device_id"]
    r = await call(node, "GET", "/api/v1/devices", token=cli.session()["access_token"])
    assert [(d["id"], d["device_type"]) for d in r.body["devices"]] == [(session["device_id"], "desktop")]


async def test_config_dir_defaults_to_xdg_config_home(node, cli, tmp_path):
    u = await new_user(node)
    env = cli.env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    del env["NOTISYNC_CONFIG_DIR"]
    (await cli.run("login", "--email", u.email, "--password", u.password, env=env)).ok()
    assert os.path.isfile(tmp_path / "xdg" / "notisync" / "session.json")
    assert not os.path.exists(cli.config_dir)


async def test_wrong_password_fails_with_one_line(node, cli):
    u = await new_user(node)
    line = (await cli.run("login", "--email", u.email, "--password", "wrong horse")).one_line_error()
    assert "wrong email or password" in line
    assert not os.path.exists(os.path.join(cli.config_dir, "session.json"))


async def test_unreachable_server_and_not_logged_in_fail_with_one_line(cli):
    cli.server = f"http://127.0.0.1:{free_port()}"
    line = (await cli.run("login", "--email", "a@example.com", "--password", "x" * 8)).one_line_error()
    assert "cannot reach" in line
    assert "not logged in" in (await cli.run("list")).one_line_error()
    assert "not logged in" in (await cli.run("watch")).one_line_error()


async def test_expired_access_token_is_refreshed_once(node, cli, user):
    with open(os.path.join(node.data_dir, "jwt_secret"), encoding="ascii") as f:
        secret = f.read().strip()
    now = int(time.time())
    sid = jwt.decode(cli.session()["access_token"], options={"verify_signature": False})["sid"]  # the CLI's session
    expired = jwt.encode({"sub": user.id, "sid": sid, "type": "access", "iat": now - 999, "exp": now - 9},
                         secret, "HS256")

    def expire(**changes: str) -> dict[str, Any]:
        session = {**cli.session(), "access_token": expired, **changes}
        with open(os.path.join(cli.config_dir, "session.json"), "w", encoding="utf-8") as f:
            json.dump(session, f)
        return session

    spent = expire()["refresh_token"]
    sent = (await cli.run("send", "--app", "Mail", "--title", "after expiry")).ok().out.strip()
    assert (await rest_notification(user, sent))["title"] == "after expiry"
    assert cli.session()["access_token"] != expired and cli.session()["refresh_token"] != spent
    # The socket refuses an expired token with 1008: watch refreshes and connects.
    expire()
    watch = await cli.watch("--json")
    phone = await user.device("mobile")
    posted = await user.post("live", device=phone)
    assert (await watch.frame())["data"]["id"] == sent  # send posts as its own device: watch shows it
    assert (await watch.frame())["data"]["id"] == posted["id"]
    assert await watch.stop() == 0
    assert cli.session()["access_token"] != expired
    # A spent refresh token cannot help: the CLI says to log in again.
    expire(refresh_token=spent)
    assert "session expired" in (await cli.run("list")).one_line_error()


# -- notifications ------------------------------------------------------------------

async def test_send_prints_only_an_id_that_rest_returns(cli, user):
    r = (await cli.run("send", "--app", "Build", "--title", "CI", "--body", "green",
                       "--category", "Work", "--priority", "2")).ok()
    assert UUID_RE.match(r.out.strip()) and r.out.count("\n") == 1, r.out
    n = await rest_notification(user, r.out.strip())
    assert (n["app_name"], n["title"], n["body"], n["category"], n["priority"]) == ("Build", "CI", "green", "Work", 2)
    # posted as send's own device (so a watch of the CLI's device shows it), with a key
    assert n["source_device_id"] == cli.session()["sender"]["device_id"] != cli.session()["device_id"]
    assert "priority" in (await cli.run("send", "--app", "A", "--title", "T", "--priority", "99")).one_line_error()


async def test_list_and_search_show_it(cli, user):
    first = (await cli.run("send", "--app", "Mail", "--title", "Invoice 42")).ok().out.strip()
    second = (await cli.run("send", "--app", "Chat", "--title", "lunch?", "--category", "Junk")).ok().out.strip()
    lines = (await cli.run("list")).ok().out.splitlines()
    assert [line.split()[0] for line in lines] == [second, first]  # newest first
    assert "Mail: Invoice 42" in lines[1] and "unread" in lines[1]
    assert (await cli.run("list", "--app", "Mail")).ok().out.split()[0] == first
    assert (await cli.run("list", "--category", "Junk")).ok().out.split()[0] == second
    found = (await cli.run("search", "invoice", "--json")).ok().out.splitlines()
    assert [json.loads(line)["id"] for line in found] == [first]
    (await cli.run("read", second)).ok()
    assert [line.split()[0] for line in (await cli.run("list", "--unread")).ok().out.splitlines()] == [first]
    assert len((await cli.run("list", "--limit", "1")).ok().out.splitlines()) == 1


async def test_list_follows_next_cursor_past_one_page(cli, user):
    for start in range(0, 205, 41):
        await asyncio.gather(*(user.post(f"bulk {i}", app_name="Bulk") for i in range(start, start + 41)))
    lines = (await cli.run("list", "--app", "Bulk", "--limit", "500")).ok().out.splitlines()
    assert len(lines) == len({line.split()[0] for line in lines}) == 205


async def test_read_and_dismiss_change_state_over_rest(cli, user):
    nid = (await user.post("to act on"))["id"]
    assert (await cli.run("read", nid)).ok().out == "marked read: Slack: to act on\n"
    n = await rest_notification(user, nid)
    assert n["is_read"] and not n["is_dismissed"]
    assert (await cli.run("dismiss", nid)).ok().out == "dismissed: Slack: to act on\n"
    assert (await rest_notification(user, nid))["is_dismissed"]


async def test_unknown_ids_fail_with_one_line(cli, user):
    unknown = str(uuid.uuid4())
    for command in (("read", unknown), ("dismiss", unknown), ("devices", "rename", unknown, "x"),
                    ("devices", "remove", unknown)):
        assert "not found" in (await cli.run(*command)).one_line_error(), command


async def test_devices_list_add_rename_remove(cli, user):
    own = cli.session()["device_id"]
    lines = (await cli.run("devices")).ok().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(own) and "desktop" in lines[0] and "(this CLI)" in lines[0]
    added = (await cli.run("devices", "add", "Pixel", "--type", "mobile")).ok().out.strip()
    assert UUID_RE.match(added)
    (await cli.run("devices", "rename", added, "Pixel 9")).ok()
    listed = {d["id"]: d for d in map(json.loads, (await cli.run("devices", "--json")).ok().out.splitlines())}
    assert (listed[added]["device_name"], listed[added]["device_type"]) == ("Pixel 9", "mobile")
    (await cli.run("devices", "remove", added)).ok()
    r = await user.call("GET", "/api/v1/devices")
    assert [d["id"] for d in r.body["devices"]] == [own]


# -- watch --------------------------------------------------------------------------

async def test_watch_resumes_after_restart_with_exactly_what_it_missed(cli, user):
    phone = await user.device("mobile")
    watch = await cli.watch("--json")
    first = await user.post("one", device=phone)
    frame = await watch.frame()
    assert (frame["type"], frame["data"]["id"]) == ("new_notification", first["id"]) and frame["id"]
    assert await watch.stop(signal.SIGINT) == 0
    device_id = cli.session()["device_id"]
    with open(os.path.join(cli.config_dir, "watch.json"), encoding="utf-8") as f:
        assert json.load(f)[device_id]["last_id"] == frame["id"]

    missed = [(await user.post(title, device=phone))["id"] for title in ("two", "three")]
    # Another socket of the same device takes both, moving the server's own
    # cursor past them: watch must resume from what *it* printed.
    other = await ws_connect(user.node, user.token, device_id)
    assert [(await other.recv_type("new_notification"))["data"]["id"] for _ in missed] == missed
    other.close()
    await other.wait_closed()
    watch = await cli.watch("--json")
    assert [(await watch.frame())["data"]["id"] for _ in missed] == missed
    # Nothing else queued in between or after: the next frame is a new one.
    marker = await user.post("four", device=phone)
    assert (await watch.frame())["data"]["id"] == marker["id"]
    assert await watch.stop(signal.SIGINT) == 0
    assert await watch.stderr() == ""  # a clean stop: no traceback, no warning


async def test_watch_shows_syncs_and_device_status_and_stops_on_sigterm(cli, user):
    phone = await user.device("mobile", name="Pixel")
    watch = await cli.watch()
    nid = (await user.post("Build", device=phone, app_name="CI", body="passed\non main"))["id"]
    assert (await watch.line()).endswith("CI: Build — passed on main")
    for action, word in (("read", "read"), ("dismissed", "dismissed")):
        r = await user.call("PUT", f"/api/v1/notifications/{nid}/action", {"action": action, "device_id": phone})
        assert r.status == 200, r.body
        assert (await watch.line()).endswith(f" {word} CI: Build — passed on main ({nid})")
    socket = await ws_connect(user.node, user.token, phone)
    assert (await watch.line()).endswith("device Pixel online")
    socket.close()
    assert (await watch.line()).endswith("device Pixel offline")
    assert await watch.stop(signal.SIGTERM) == 0


async def test_watch_refetches_over_rest_after_sync_required(cli, user):
    phone = await user.device("mobile")
    (await cli.run("send", "--app", "Own", "--title", "from the CLI itself")).ok()
    missed = await user.post("missed", device=phone)
    device_id = cli.session()["device_id"]
    with open(os.path.join(cli.config_dir, "watch.json"), "w", encoding="utf-8") as f:
        json.dump({device_id: {"last_id": "not-an-id"}}, f)  # history the server cannot have
    watch = await cli.watch("--json")
    assert (await watch.frame())["type"] == "sync_required"
    own = await watch.frame()  # send posts as a device of its own, so watch shows it too
    assert (own["data"]["title"], own.get("refetched")) == ("from the CLI itself", True)
    refetched = await watch.frame()
    assert (refetched["data"]["id"], refetched.get("refetched")) == (missed["id"], True)
    live = await user.post("live", device=phone)
    assert (await watch.frame())["data"]["id"] == live["id"]
    assert await watch.stop() == 0


async def test_watch_exits_non_zero_when_its_device_is_revoked(cli, user):
    phone = await user.device("mobile")
    watch = await cli.watch("--json")
    await user.post("connected", device=phone)
    await watch.frame()
    revoked = cli.session()["device_id"]
    assert (await user.call("DELETE", f"/api/v1/devices/{revoked}")).status == 204
    assert await asyncio.wait_for(watch.proc.wait(), 10) != 0
    assert "device revoked" in Result(1, "", await watch.stderr()).one_line_error()
    # The server refuses that id for good: logging in again registers a new device.
    (await cli.run("login", "--email", user.email, "--password", user.password)).ok()
    assert cli.session()["device_id"] not in (None, revoked)
    assert "(this CLI)" in (await cli.run("devices")).ok().out


async def test_watch_reconnects_after_the_server_restarts(tmp_path):
    async with own_node(tmp_path) as (own, cli):
        u = await new_user(own)
        phone = await u.device("mobile")
        (await cli.run("login", "--email", u.email, "--password", u.password)).ok()
        watch = await cli.watch("--json")
        await u.post("before", device=phone)
        assert (await watch.frame())["data"]["title"] == "before"
        assert own.stop() == 0
        assert "cannot reach" in (await cli.run("watch")).one_line_error()  # a new one fails fast
        own.start()
        after = await u.post("after", device=phone)
        frame = await watch.frame(timeout=30)
        while frame["type"] == "sync_required":  # if the server lost its streams
            frame = await watch.frame(timeout=30)
        assert frame["data"]["id"] == after["id"]
        assert await watch.stop() == 0
        assert "reconnecting" in await watch.stderr()


async def test_installed_console_script(cli, user):
    script = os.path.join(os.path.dirname(sys.executable), "notisync")
    if not os.path.exists(script):
        pytest.skip("the notisync console script is not installed next to this python")
    out = (await cli.run("send", "--app", "Script", "--title", "via entry point", program=[script])).ok().out
    assert (await rest_notification(user, out.strip()))["title"] == "via entry point"


async def test_list_and_watch_strip_terminal_escapes_from_notification_text(cli, user):
    phone = await user.device("mobile")
    watch = await cli.watch()
    # A window-title change, colours, a clipboard write (OSC 52), a C1 CSI, a NUL.
    title = "\x1b]0;pwned\x07evil\x1b[31mred\x1b[0m \x1b]52;c;Zm9v\x1b\\copied\x9b2J\x00end"
    nid = (await user.post(title, device=phone, app_name="Chat\x1b[2J", body="line1\nline2\x85x"))["id"]
    shown = await watch.line()
    listed = (await cli.run("list")).ok().out
    as_json = (await cli.run("list", "--json")).ok().out
    for out in (shown, listed, as_json):
        assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in out), repr(out)
    assert shown.endswith("Chat: evilred copied end — line1 line2 x"), repr(shown)
    assert "Chat: evilred copied end — line1 line2 x" in listed
    # --json keeps the exact text, escaped.
    assert json.loads(as_json.splitlines()[0])["title"] == title and nid in as_json
    await watch.stop()


# -- issue 17: send + watch, --server anywhere, logout/whoami, API keys ---------------------

async def test_send_in_one_terminal_shows_in_watch_in_another(cli, user):
    watch = await cli.watch()
    nid = (await cli.run("send", "--app", "Shell", "--title", "hello from send")).ok().out.strip()
    assert (await watch.line()).endswith("Shell: hello from send")
    (await cli.run("read", nid)).ok()  # read by the CLI's own device: its watch is not told
    sender_device = cli.session()["sender"]["device_id"]
    r = await user.call("PUT", f"/api/v1/notifications/{nid}/action", {"action": "dismissed", "device_id": sender_device})
    assert r.status == 200, r.body
    line = await watch.line()
    assert line.endswith(f"dismissed Shell: hello from send ({nid})"), line
    assert await watch.stop() == 0
    # send's key survives a revoked key: a new one is made
    sender = cli.session()["sender"]
    r = await user.call("DELETE", f"/api/v1/devices/{sender['device_id']}/api-keys/{sender['key_id']}")
    assert r.status == 204
    (await cli.run("send", "--app", "Shell", "--title", "again")).ok()
    assert cli.session()["sender"]["key_id"] != sender["key_id"]


async def test_server_after_the_subcommand_whoami_and_logout(node, cli, user):
    env = cli.env()
    argv = [sys.executable, "-m", "notisync", "whoami", "--server", node.base]
    proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    device = cli.session()["device_id"]
    assert out.decode().startswith(f"{user.email} ({user.id}) on {node.base}; this device: ")
    assert out.decode().strip().endswith(f"({device})")
    wrong = [sys.executable, "-m", "notisync", "--server", node.base, "list", "--server", f"http://127.0.0.1:{free_port()}"]
    proc = await asyncio.create_subprocess_exec(*wrong, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode != 0 and "logged in to" in err.decode()  # the later --server is the one used
    (await cli.run("send", "--app", "A", "--title", "t")).ok()
    token, sender = cli.session()["access_token"], cli.session()["sender"]
    assert (await cli.run("logout")).ok().out.strip() == f"logged out of {node.base}"
    assert (await call(node, "GET", "/api/v1/devices", token=token)).status == 401
    assert (await call(node, "GET", "/api/v1/devices", token=sender["key"])).status == 401
    assert "access_token" not in cli.session()
    assert "not logged in" in (await cli.run("whoami")).one_line_error()
    assert (await cli.run("logout")).ok().out.strip() == "not logged in"


async def test_api_key_create_list_revoke(cli, user):
    key = (await cli.run("api-key", "create", "--new-device", "Pixel 8", "--name", "Tasker")).ok()
    assert key.out.startswith("nsk_") and key.out.count("\n") == 1 and "not shown again" in key.err
    r = await call(user.node, "POST", "/api/v1/notifications", {"app_name": "Tasker", "title": "via key"},
                   token=key.out.strip())
    assert r.status == 201, r.body
    lines = (await cli.run("api-key", "list")).ok().out.splitlines()
    assert len(lines) == 1 and "Pixel 8  Tasker" in lines[0] and "never used" not in lines[0]
    key_id = lines[0].split()[0]
    phone = r.body["source_device_id"]
    assert (await cli.run("api-key", "list", "--device", phone)).ok().out.splitlines() == lines
    assert (await cli.run("api-key", "revoke", key_id)).ok().out.strip() == f"revoked API key {key_id}"
    assert (await call(user.node, "GET", "/api/v1/devices", token=key.out.strip())).status == 401
    assert (await cli.run("api-key", "list")).ok().out == ""
    assert "not found" in (await cli.run("api-key", "revoke", key_id)).one_line_error()
    second = (await cli.run("api-key", "create", "--device", phone)).ok().out.strip()
    assert second.startswith("nsk_")
    assert "argument" in (await cli.run("api-key", "create")).one_line_error()
