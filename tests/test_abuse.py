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
