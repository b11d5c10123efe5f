"""SPEC "Limits", the abuse half, on real servers: sockets per device, login and
registration rates, the password-hashing gate, HTTP timeouts and the per-address
connection cap."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import time
from typing import Iterator

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from notisync.core.auth import legacy_scrypt_hash
from tests.harness import WS, Node, call, new_user
from tests.test_limits import start


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
    # Without the per-address cap (256 by default; tested on its own below): every socket
    # here and the /health probe share 127.0.0.1, and once the node opened sockets faster
    # than it replaced them (the frame reader, uvloop) the cap answered /health 429 mid-flood.
    node = start(stopped, "--max-connections-per-address", "0")
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
    # Nothing of the attempts reaches the log: no passwords, no emails, no tokens.
    with open(node.log_path, encoding="utf-8", errors="replace") as f:
        logged = f.read()
    for secret in ("Winter2026", "guess", owner.password, owner.email, "victim0@", r.body["access_token"]):
        assert secret not in logged, secret


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


# -- HTTP timeouts and the per-address connection cap ---------------------------------------
def raw_connect(node: Node) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=60)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One HTTP response (Content-Length bodies only) from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), body


def dribble_until_closed(sock: socket.socket, pieces: Iterator[bytes], limit: float = 60.0) -> bool:
    """Send a piece every 0.5 s until the server closes (True) or ``limit`` seconds pass (False)."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            sock.sendall(next(pieces))
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:  # reset or broken pipe: closed
            return True
    return False


def header_lines() -> Iterator[bytes]:
    yield b"GET /health HTTP/1.1\r\nHost: x\r\n"
    n = 0
    while True:
        n += 1
        yield f"X-Slow-{n}: a\r\n".encode()


async def test_a_slowloris_client_is_dropped_after_the_header_timeout(stopped) -> None:
    node = start(stopped, "--http-timeout", "2")
    sock = raw_connect(node)
    try:
        # A header line every half second, never the blank line: Tornado's default waits an hour.
        assert await asyncio.to_thread(dribble_until_closed, sock, header_lines())
    finally:
        sock.close()
    # A body that never finishes is dropped as well.
    sock = raw_connect(node)
    try:
        sock.sendall(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        assert await asyncio.to_thread(dribble_until_closed, sock, iter(lambda: b"{", None))
    finally:
        sock.close()
    # A kept-alive connection may idle longer than the header timeout between requests (60 s).
    sock = raw_connect(node)
    try:
        request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        assert (await asyncio.to_thread(read_response, sock))[0] == 200
        await asyncio.sleep(3)
        sock.sendall(request)
        assert (await asyncio.to_thread(read_response, sock))[0] == 200
    finally:
        sock.close()
    assert (await call(node, "GET", "/health")).status == 200


async def test_connections_past_the_cap_per_address_are_refused_with_429(stopped) -> None:
    node = start(stopped, "--max-connections-per-address", "20", "--http-timeout", "0")
    user = await new_user(node)  # its keep-alive HTTP connection counts too
    laptop = await user.device("web")
    sockets = [await open_ws(node, user.token, laptop) for _ in range(3)]
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    held: list[socket.socket] = []
    refused = None
    for _ in range(30):
        sock = raw_connect(node)
        sock.sendall(request)
        status, body = await asyncio.to_thread(read_response, sock)
        if status == 429:
            refused = json.loads(body)
            sock.close()
            break
        assert status == 200
        held.append(sock)
    assert refused is not None and refused["error"]["code"] == "too_many_connections", refused
    # The /ws sockets and the test client's own connection count: fewer than 20 raw ones got in.
    assert len(held) <= 20 - len(sockets)
    # Closing some makes room again.
    for sock in held[:5]:
        sock.close()

    async def admitted() -> bool:
        sock = raw_connect(node)
        try:
            sock.sendall(request)
            return (await asyncio.to_thread(read_response, sock))[0] == 200
        except OSError:
            return False
        finally:
            sock.close()

    for _ in range(200):
        if await admitted():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no room after closing connections")
    for sock in held[5:]:
        sock.close()
    for ws in sockets:
        ws.close()


# -- password hashing: the gate, argon2id, rehash ---------------------------------------------
async def test_a_burst_of_logins_beyond_the_hashing_gate_gets_503_busy_at_once(stopped) -> None:
    # One hash at a time, four waiting: a burst of 60 cannot all be queued.
    node = start(stopped, "--hash-concurrency", "1", "--login-rate", "0")
    user = await new_user(node)
    client = AsyncHTTPClient(force_instance=True, max_clients=100)
    body = json.dumps({"email": user.email, "password": user.password})

    async def one() -> tuple[int, str, str | None]:
        r = await client.fetch(HTTPRequest(node.base + "/api/v1/auth/login", method="POST", body=body,
                                           headers={"Content-Type": "application/json"}, request_timeout=60),
                               raise_error=False)
        code = json.loads(r.body)["error"]["code"] if r.code != 200 else ""
        return r.code, code, r.headers.get("Retry-After")

    try:
        burst = asyncio.ensure_future(asyncio.gather(*(one() for _ in range(60))))
        health = []
        while not burst.done():
            health.append((await call(node, "GET", "/health")).status)
        answers = await burst
    finally:
        client.close()
    ok = [a for a in answers if a[0] == 200]
    busy = [a for a in answers if a[0] == 503]
    print(f"\n60 concurrent logins: {len(ok)} signed in, {len(busy)} got 503 busy; /health answered {len(health)}x")
    assert len(ok) + len(busy) == 60, answers
    assert ok and busy, answers
    assert all(code == "busy" and retry == "1" for _, code, retry in busy), busy
    assert health and set(health) == {200}, health
    # Nothing stays stuck: the next login is served.
    assert (await call(node, "POST", "/api/v1/auth/login",
                       {"email": user.email, "password": user.password})).status == 200


async def test_passwords_are_argon2id_and_an_old_scrypt_hash_is_upgraded_at_login(stopped) -> None:
    node = start(stopped)
    user = await new_user(node)
    db_path = os.path.join(node.data_dir, "notisync.sqlite3")

    def stored() -> str:
        with sqlite3.connect(db_path) as db:
            return db.execute("SELECT password_hash FROM users WHERE id = ?", (user.id,)).fetchone()[0]

    assert stored().startswith("$argon2id$v=19$m=19456,t=2,p=1$"), stored()
    # What an earlier version stored: scrypt, N=2^14.
    old = legacy_scrypt_hash(user.password)
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (old, user.id))
    # A wrong password changes nothing.
    assert (await call(node, "POST", "/api/v1/auth/login", {"email": user.email, "password": "nope"})).status == 401
    assert stored() == old
    r = await call(node, "POST", "/api/v1/auth/login", {"email": user.email, "password": user.password})
    assert r.status == 200, r.body
    assert stored().startswith("$argon2id$"), stored()
    # And the new hash is the password.
    r = await call(node, "POST", "/api/v1/auth/login", {"email": user.email, "password": user.password})
    assert r.status == 200, r.body


def test_a_malformed_login_rate_is_refused_at_start(tmp_path) -> None:
    import subprocess
    import sys

    from tests.harness import ROOT

    for bad in ("abc", "1,2,3", "-1,5"):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--data-dir", str(tmp_path),
                               "--login-rate", bad], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "--login-rate" in proc.stderr, (bad, proc.stderr)
