"""SPEC "Limits", the abuse half, on real servers: sockets per device, login and
registration rates, the password-hashing gate, HTTP timeouts and the per-address
connection cap."""
from __future__ import annotations

import asyncio
import shutil
import time
from typing import Iterator

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.harness import WS, Node, call, new_user


@pytest.fixture
def stopped() -> Iterator[list[Node]]:
    """Nodes a test started; stopped (exit 0) and cleaned up afterwards."""
    started: list[Node] = []
    yield started
    for n in started:
        assert n.stop() == 0, n.log()
    for n in started:
        shutil.rmtree(n.data_dir, ignore_errors=True)


def start(stopped: list[Node], *extra: str, **kw) -> Node:
    n = Node(extra=list(extra), **kw).start()
    stopped.append(n)
    return n


async def until(check, timeout: float = 30.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)


async def open_ws(node: Node, token: str, device: str) -> WS:
    url = f"{node.ws_base}/ws?token={token}&device_id={device}"
    return WS(await websocket_connect(HTTPRequest(url, request_timeout=60, connect_timeout=60)))


def is_open(ws: WS) -> bool:
    return not ws._reader.done()


# -- sockets per device -------------------------------------------------------------------
async def test_the_sixth_socket_of_a_device_replaces_the_oldest(stopped) -> None:
    node = start(stopped)  # default --max-sockets-per-device 5
    user = await new_user(node)
    phone = await user.device("mobile")
    laptop = await user.device("web")
    sockets = []
    for _ in range(6):
        ws = await open_ws(node, user.token, laptop)
        # Each is registered before the next opens, so "oldest" is well defined.
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
        sockets.append(ws)
    first = sockets[0]
    assert await first.wait_closed(10) == 1008
    assert first.conn.close_reason == "replaced"
    note = await user.post("after", device=phone)
    for ws in sockets[1:]:
        frame = await ws.recv_type("new_notification", 10)
        assert frame["data"]["id"] == note["id"]
        assert is_open(ws)
    for ws in sockets[1:]:
        ws.close()


async def test_a_flood_of_sockets_for_one_device_leaves_at_most_five_and_health_answers(stopped) -> None:
    node = start(stopped)
    user = await new_user(node)
    laptop = await user.device("web")
    opened: list[WS] = []
    failed: list[BaseException] = []

    async def one() -> None:
        try:
            opened.append(await open_ws(node, user.token, laptop))
        except Exception as exc:  # a refused or dropped connection is fine in a flood
            failed.append(exc)

    flood = asyncio.ensure_future(asyncio.gather(*(one() for _ in range(300))))
    health = []
    while not flood.done():
        r = await call(node, "GET", "/health")
        health.append(r.status)
        await asyncio.sleep(0.2)
    await flood
    assert health and all(s == 200 for s in health), health
    print(f"\n{len(opened)} of 300 sockets opened ({len(failed)} refused); /health answered {len(health)} times")
    # Every socket past the newest five is closed with 1008 "replaced".
    await until(lambda: sum(is_open(ws) for ws in opened) <= 5, timeout=120)
    closed = [ws for ws in opened if not is_open(ws)]
    assert all(ws.close_code == 1008 and ws.conn.close_reason == "replaced" for ws in closed)
    assert sum(is_open(ws) for ws in opened) == 5
    # And the node let go of the others.
    for _ in range(600):
        r = await call(node, "GET", "/health")
        if r.body["websocket"]["connections"] <= 5:
            break
        await asyncio.sleep(0.1)
    assert r.status == 200 and r.body["websocket"]["connections"] == 5, r.body
    for ws in opened:
        ws.close()


# -- login and registration rates -----------------------------------------------------------
async def login(node: Node, email: str, password: str, address: str) -> "object":
    return await call(node, "POST", "/api/v1/auth/login", {"email": email, "password": password},
                      headers={"X-Real-IP": address})


def retry_after(r) -> int:
    value = r.headers.get("Retry-After")
    assert value is not None and value.isdigit(), r.headers
    return int(value)


async def test_a_password_spray_from_one_address_gets_429_and_the_owner_still_logs_in(stopped) -> None:
    # --behind-proxy: the client address comes from X-Real-IP, so one test can be many addresses.
    node = start(stopped, "--behind-proxy", "--login-rate", "5,30")
    owner = await new_user(node)
    stranger = "203.0.113.7"
    # Five wrong passwords for the owner's email from the stranger's address: that pair is throttled.
    for _ in range(5):
        assert (await login(node, owner.email, "guess", stranger)).status == 401
    r = await login(node, owner.email, "guess", stranger)
    assert r.status == 429 and r.body["error"]["code"] == "rate_limited", r.body
    assert 1 <= retry_after(r) <= 60
    # Spraying other emails from the same address: 30 failures a minute in all, then 429 for any email.
    # (A token comes back every 2 s, so a slow machine may fit in a few more than 25.)
    statuses: list[int] = []
    while 429 not in statuses and len(statuses) < 100:
        statuses.append((await login(node, f"victim{len(statuses)}@example.com", "Winter2026!", stranger)).status)
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401} and len(statuses) > 25, statuses
    r = await login(node, "someone-else@example.com", "Winter2026!", stranger)
    assert r.status == 429 and 1 <= retry_after(r) <= 60
    # The owner, from their own address, is not locked out by any of it.
    r = await login(node, owner.email, owner.password, "198.51.100.20")
    assert r.status == 200, r.body


async def test_a_success_resets_the_email_and_address_count_and_successes_are_not_limited(stopped) -> None:
    node = start(stopped, "--behind-proxy", "--login-rate", "5,30")
    user = await new_user(node)
    here = "198.51.100.30"
    for _ in range(4):
        assert (await login(node, user.email, "typo", here)).status == 401
    assert (await login(node, user.email, user.password, here)).status == 200
    # The count started over: five more mistakes before a 429.
    for _ in range(5):
        assert (await login(node, user.email, "typo", here)).status == 401
    assert (await login(node, user.email, "typo", here)).status == 429
    # Successes give the address its token back: 40 sign-ins from one address (an office) all pass.
    office = "198.51.100.31"
    for _ in range(40):
        assert (await login(node, user.email, user.password, office)).status == 200


async def test_registration_is_limited_per_address(stopped) -> None:
    node = start(stopped, "--behind-proxy", "--register-rate", "3")
    here, there = "198.51.100.40", "198.51.100.41"

    async def register(address: str, n: int):
        return await call(node, "POST", "/api/v1/auth/register",
                          {"email": f"r{n}-{address}@example.com", "password": "correct horse"},
                          headers={"X-Real-IP": address})

    assert [(await register(here, i)).status for i in range(3)] == [201] * 3
    r = await register(here, 3)
    assert r.status == 429 and r.body["error"]["code"] == "rate_limited", r.body
    # 3 an hour: the next one in about 20 minutes.
    assert 60 <= retry_after(r) <= 1200
    assert (await register(there, 0)).status == 201
