"""Hygiene on a real server: private file modes (new and existing installs), the JWT
secret's minimum length, nosniff on API answers, the dashboard's connect-src."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

from tests.harness import ROOT, Node, call, new_user, short_tmpdir


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_data_dir_and_its_files_are_private_even_in_an_existing_install() -> None:
    data_dir = short_tmpdir()
    # What an older version left: a world-readable dir, secret, database and log.
    os.chmod(data_dir, 0o755)
    old = os.umask(0o022)
    try:
        with open(os.path.join(data_dir, "jwt_secret"), "w", encoding="ascii") as f:
            f.write("a" * 64)
        for name in ("notisync.sqlite3", "redis.log"):
            open(os.path.join(data_dir, name), "w").close()
    finally:
        os.umask(old)
    os.chmod(os.path.join(data_dir, "jwt_secret"), 0o644)
    node = Node(data_dir=data_dir).start()
    try:
        user = await new_user(node)
        phone = await user.device("mobile")
        await user.device("web")
        await user.post("code 123456", device=phone)  # rows in the WAL, entries in the AOF
        assert mode(data_dir) == 0o700
        files = ["notisync.sqlite3", "notisync.sqlite3-wal", "notisync.sqlite3-shm", "appendonly.aof",
                 "redis.conf", "redis.log", "redis.pid", "jwt_secret"]
        modes = {name: oct(mode(os.path.join(data_dir, name))) for name in files}
        assert modes == {name: oct(0o600) for name in files}, modes
        assert "jwt_secret was readable by others (mode 644); fixed to 600" in open(node.log_path).read()
        # The secret was kept, not replaced: it still signs this user's tokens after a restart.
        assert node.stop() == 0
        node.start()
        assert (await user.call("GET", "/api/v1/devices")).status == 200
    finally:
        assert node.stop() == 0
        shutil.rmtree(data_dir, ignore_errors=True)


def test_short_jwt_secret_is_refused_at_start_with_one_line_and_exit_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTISYNC_")}
    for args, extra_env in ((["--jwt-secret", "x" * 31], {}), ([], {"NOTISYNC_JWT_SECRET": "test-secret"})):
        proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--data-dir", str(tmp_path), *args],
                              capture_output=True, text=True, env={**env, **extra_env}, cwd=ROOT, timeout=30)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "--jwt-secret" in lines[0] and "at least 32 bytes" in lines[0], proc.stderr
    assert not os.path.exists(tmp_path / "jwt_secret")  # refused before anything was created


async def test_api_answers_carry_nosniff(node) -> None:
    user = await new_user(node)
    for path, token in (("/api/v1/devices", user.token), ("/api/v1/devices", None), ("/health", None),
                        ("/api/v1/nowhere", None), ("/ws", None)):
        r = await call(node, "GET", path, token=token)
        assert r.headers.get("X-Content-Type-Options") == "nosniff", (path, r.status)


async def test_dashboard_connects_only_to_its_own_origin(node) -> None:
    r = await call(node, "GET", "/")
    csp = dict(part.strip().split(" ", 1) for part in r.headers["Content-Security-Policy"].split(";"))
    assert csp["connect-src"] == "'self'"
