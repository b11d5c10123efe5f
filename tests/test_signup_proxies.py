"""--signup closed with `run.py adduser`, and --trusted-proxies, on real nodes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from tornado.httputil import HTTPHeaders

from notisync.runtime.proxies import TrustedProxies
from tests.harness import ROOT, Node, call

API = "/api/v1"
RUN = os.path.join(ROOT, "run.py")


def adduser(*args: str, password: str | None = "correct horse", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, RUN, "adduser", *args], input=None if password is None else password + "\n",
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})}, cwd=ROOT)


@pytest.fixture
def closed_node():
    node = Node(extra=["--signup", "closed"]).start()
    yield node
    node.stop()
    shutil.rmtree(node.data_dir, ignore_errors=True)


async def test_closed_signup_refuses_register_and_adduser_makes_working_accounts(closed_node: Node) -> None:
    node = closed_node
    r = await call(node, "POST", f"{API}/auth/register", {"email": "ana@example.com", "password": "correct horse"})
    assert r.status == 403 and r.body["error"]["code"] == "signup_closed", r.body
    r = await call(node, "POST", f"{API}/auth/register", raw=b"not json")  # any body: still the same answer
    assert r.status == 403 and r.body["error"]["code"] == "signup_closed"

    # the command works beside the running server, on the same data dir
    done = adduser("Ana@Example.com", "--data-dir", node.data_dir)
    assert done.returncode == 0, done.stderr
    assert "created ana@example.com (id " in done.stdout
    r = await call(node, "POST", f"{API}/auth/login", {"email": "ana@example.com", "password": "correct horse"})
    assert r.status == 200, r.body
    token = r.body["access_token"]
    r = await call(node, "POST", f"{API}/devices", {"device_name": "Pixel", "device_type": "mobile"}, token=token)
    assert r.status == 201

    # the environment picks the data dir too, like the server's
    done = adduser("bo@example.com", env={"NOTISYNC_DATA_DIR": node.data_dir})
    assert done.returncode == 0, done.stderr
    r = await call(node, "POST", f"{API}/auth/login", {"email": "bo@example.com", "password": "correct horse"})
    assert r.status == 200

    # mistakes: one line, non-zero, nothing made
    taken = adduser("ana@example.com", "--data-dir", node.data_dir)
    assert taken.returncode == 1 and "already registered" in taken.stderr and len(taken.stderr.splitlines()) == 1
    short = adduser("cy@example.com", "--data-dir", node.data_dir, password="short")
    assert short.returncode == 1 and "password" in short.stderr, short.stderr
    bad = adduser("not-an-email", "--data-dir", node.data_dir)
    assert bad.returncode == 1 and "email" in bad.stderr, bad.stderr
    r = await call(node, "POST", f"{API}/auth/login", {"email": "cy@example.com", "password": "short"})
    assert r.status == 401


def test_adduser_help_and_bad_flags() -> None:
    shown = adduser("--help", password=None)
    assert shown.returncode == 0 and "adduser" in shown.stdout and "stdin" in shown.stdout
    bad = adduser("x@example.com", "--signup", "sometimes")
    assert bad.returncode == 2 and bad.stderr.startswith("run.py adduser: error: --signup")


async def test_open_signup_is_the_default() -> None:
    node = Node().start()
    try:
        r = await call(node, "POST", f"{API}/auth/register", {"email": "d@example.com", "password": "correct horse"})
        assert r.status == 201
    finally:
        node.stop()
        shutil.rmtree(node.data_dir, ignore_errors=True)


# -- trusted proxies ----------------------------------------------------------------

def test_client_address_walks_forwarded_for_through_trusted_hops_only() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])

    def addr(peer: str, **headers: str) -> str:
        return proxies.client_address(peer, HTTPHeaders({k.replace("_", "-"): v for k, v in headers.items()}))

    assert addr("127.0.0.1", X_Forwarded_For="203.0.113.9") == "203.0.113.9"
    assert addr("127.0.0.1", X_Forwarded_For="198.51.100.1, 203.0.113.9, 10.1.2.3") == "203.0.113.9"
    assert addr("127.0.0.1", X_Forwarded_For="10.9.9.9, 10.1.2.3") == "10.9.9.9"  # every hop ours
    assert addr("127.0.0.1", X_Real_IP="203.0.113.7") == "203.0.113.7"
    assert addr("127.0.0.1", X_Forwarded_For="junk") == "127.0.0.1"
    assert addr("127.0.0.1", X_Forwarded_For="junk, 203.0.113.9") == "203.0.113.9"
    assert addr("192.0.2.5", X_Forwarded_For="203.0.113.9", X_Real_IP="203.0.113.9") == "192.0.2.5"  # not a proxy
    assert addr("::ffff:10.0.0.1", X_Forwarded_For="203.0.113.9") == "203.0.113.9"
    assert addr("192.0.2.5") == "192.0.2.5"
    assert TrustedProxies(["*"]).client_address("192.0.2.5", HTTPHeaders({"X-Real-IP": "203.0.113.1"})) == "203.0.113.1"
    assert not TrustedProxies([])


async def _failed_logins_until_limited(node: Node, email: str, forwarded_for: str) -> list[int]:
    statuses = []
    for _ in range(6):
        r = await call(node, "POST", f"{API}/auth/login", {"email": email, "password": "wrong password"},
                       headers={"X-Forwarded-For": forwarded_for, "X-Real-IP": forwarded_for})
        statuses.append(r.status)
    return statuses


@pytest.mark.parametrize("flags, trusted", [
    (["--trusted-proxies", "127.0.0.1,10.0.0.0/8"], True),
    (["--behind-proxy"], True),  # the older flag alone: any peer's headers, as before
    (["--trusted-proxies", "10.0.0.0/8"], False),  # the peer (127.0.0.1) is not a proxy: headers ignored
    ([], False),
])
async def test_login_limit_counts_the_forwarded_address_only_from_trusted_proxies(flags: list[str], trusted: bool) -> None:
    node = Node(extra=flags).start()
    try:
        email = "limit@example.com"
        assert (await _failed_logins_until_limited(node, email, "203.0.113.1"))[-1] == 429
        # another client behind the same proxy has its own budget only if the proxy is believed
        r = await call(node, "POST", f"{API}/auth/login", {"email": email, "password": "wrong password"},
                       headers={"X-Forwarded-For": "203.0.113.2"})
        assert r.status == (401 if trusted else 429), r.body
    finally:
        node.stop()
        shutil.rmtree(node.data_dir, ignore_errors=True)


def _start_and_read(extra: list[str]) -> list[dict]:
    node = Node(extra=["--log-format", "json", *extra]).start()
    assert node.stop() == 0
    with open(node.log_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.startswith("{")]
    shutil.rmtree(node.data_dir, ignore_errors=True)
    return records


def test_start_warnings_beyond_loopback() -> None:
    def warnings(records: list[dict]) -> list[str]:
        return [r["message"] for r in records if r["level"] == "WARNING" and r["logger"] == "notisync.runtime"]

    exposed = warnings(_start_and_read(["--host", "0.0.0.0"]))
    assert any("--trusted-proxies" in w for w in exposed), exposed
    assert any("open sign-up and CORS for every origin" in w for w in exposed), exposed
    assert warnings(_start_and_read(["--host", "0.0.0.0", "--trusted-proxies", "127.0.0.1", "--signup", "closed"])) == []
    assert warnings(_start_and_read(["--host", "0.0.0.0", "--behind-proxy",
                                     "--allowed-origins", "https://notes.example.com"])) == []
    assert warnings(_start_and_read([])) == []
