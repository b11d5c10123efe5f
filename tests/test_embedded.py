"""The embedded redis-server: start, reuse, shared stop, crash recovery."""
from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from notisync.runtime import embedded
from notisync.runtime.embedded import EmbeddedRedis


def alive(pid: int) -> bool:
    """True while pid runs; a zombie (killed child not yet reaped) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def servers_for(data_dir: str) -> list[int]:
    """Pids of live redis-servers serving this data dir (their title names the socket)."""
    sock = os.path.join(data_dir, "redis.sock").encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"redis-server" in cmdline and sock in cmdline and alive(int(entry)):
            pids.append(int(entry))
    return pids


def pidfile(data_dir: str) -> int:
    return int(Path(data_dir, "redis.pid").read_text().strip())


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[str]:
    # unix socket paths are limited to ~107 bytes; fall back to a short dir.
    path = str(tmp_path / "data")
    own = len(path) + len("/redis.sock") > 100
    if own:
        path = os.path.join(tempfile.mkdtemp(dir="/tmp"), "data")
    yield path
    if own:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


@pytest.fixture
def make(data_dir: str) -> Iterator[Callable[[], EmbeddedRedis]]:
    """EmbeddedRedis factory; teardown kills whatever server a test left behind."""
    made: list[EmbeddedRedis] = []

    def factory() -> EmbeddedRedis:
        made.append(EmbeddedRedis(data_dir))
        return made[-1]

    yield factory
    pids = set(servers_for(data_dir))
    pids.update(e.proc.pid for e in made if e.proc is not None)
    if os.path.exists(os.path.join(data_dir, "redis.pid")):
        pids.add(pidfile(data_dir))
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    for e in made:
        if e.proc is not None:
            e.proc.wait(timeout=10)  # reap our children
    assert all(wait_dead(pid) for pid in pids)
    assert servers_for(data_dir) == []


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[str], aioredis.Redis]]:
    clients: list[aioredis.Redis] = []

    def factory(url: str) -> aioredis.Redis:
        clients.append(aioredis.from_url(url, decode_responses=True))
        return clients[-1]

    yield factory
    for client in clients:
        await client.aclose()


async def test_start_answers_ping_on_private_socket(make, connect, data_dir) -> None:
    server = make()
    url = await server.start()
    assert url == server.url == f"unix://{os.path.abspath(data_dir)}/redis.sock"
    assert await connect(url).ping() is True

    sock = os.path.join(data_dir, "redis.sock")
    assert stat.S_ISSOCK(os.stat(sock).st_mode)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o700
    for name in ("redis.conf", "redis.pid", "redis.log", "redis.lock", "appendonly.aof"):
        assert os.path.exists(os.path.join(data_dir, name)), name
    conf = Path(data_dir, "redis.conf").read_text()
    for line in ("port 0", "appendonly yes", "appendfsync everysec", 'save ""', "daemonize no"):
        assert line in conf.splitlines()
    assert pidfile(data_dir) == server.proc.pid
    assert servers_for(data_dir) == [server.proc.pid]
    # Own session: a Ctrl-C to the terminal's process group must not reach redis.
    assert os.getsid(server.proc.pid) != os.getsid(0)


async def test_stop_shuts_server_down(make, data_dir) -> None:
    server = make()
    await server.start()
    pid = server.proc.pid
    began = time.monotonic()
    await server.stop()
    assert not alive(pid)
    # SHUTDOWN and noticing the exit are quick; the SIGTERM fallback would take 10 s.
    assert time.monotonic() - began < 5
    assert not os.path.exists(os.path.join(data_dir, "redis.sock"))
    await server.stop()  # a second stop with nothing running is harmless


async def test_data_survives_stop_and_start(make, connect) -> None:
    first = make()
    client = connect(await first.start())
    await client.rpush("queue", "m1", "m2")
    await client.aclose()
    old_pid = first.proc.pid
    await first.stop()
    assert not alive(old_pid)

    second = make()
    client = connect(await second.start())
    assert second.proc is not None and second.proc.pid != old_pid  # really a new server
    assert await client.lrange("queue", 0, -1) == ["m1", "m2"]


async def test_second_instance_reuses_running_server(make, connect, data_dir) -> None:
    first, second = make(), make()
    await first.start()
    assert await second.start() == first.url
    assert second.proc is None
    assert servers_for(data_dir) == [first.proc.pid] == [pidfile(data_dir)]
    assert await connect(second.url).ping() is True


async def test_concurrent_starts_run_one_server(make, data_dir) -> None:
    servers = [make() for _ in range(4)]
    await asyncio.gather(*(s.start() for s in servers))
    assert len([s for s in servers if s.proc is not None]) == 1
    assert servers_for(data_dir) == [pidfile(data_dir)]


async def test_start_waits_for_the_lock(make, data_dir) -> None:
    os.makedirs(data_dir)
    fd = os.open(os.path.join(data_dir, "redis.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another node is deciding
    try:
        task = asyncio.create_task(make().start())
        await asyncio.sleep(0.5)
        assert not task.done()
        assert servers_for(data_dir) == []
    finally:
        os.close(fd)
    await asyncio.wait_for(task, 15)
    assert len(servers_for(data_dir)) == 1


async def test_stop_keeps_server_while_another_client_is_connected(make, connect, data_dir) -> None:
    server = make()
    other = connect(await server.start())
    await other.set("k", "v")
    pid = server.proc.pid

    await server.stop()
    assert alive(pid)
    assert await other.get("k") == "v"

    await other.aclose()
    await server.stop()
    assert not alive(pid)
    assert servers_for(data_dir) == []


async def test_crashed_leftover_is_replaced(make, connect, data_dir) -> None:
    crashed = make()
    await crashed.start()
    old_pid = crashed.proc.pid
    os.kill(old_pid, signal.SIGKILL)
    crashed.proc.wait(timeout=10)  # init would reap it once its parent is gone
    assert os.path.exists(os.path.join(data_dir, "redis.sock"))  # stale leftovers
    assert pidfile(data_dir) == old_pid

    fresh = make()
    url = await fresh.start()
    assert fresh.proc is not None and fresh.proc.pid != old_pid
    assert servers_for(data_dir) == [fresh.proc.pid] == [pidfile(data_dir)]
    assert await connect(url).ping() is True


async def test_unresponsive_leftover_server_is_terminated(make, data_dir) -> None:
    old = make()
    await old.start()
    old_pid = old.proc.pid
    os.unlink(os.path.join(data_dir, "redis.sock"))  # still running, but unreachable

    fresh = make()
    await fresh.start()
    assert not alive(old_pid)
    assert servers_for(data_dir) == [fresh.proc.pid]


async def test_server_of_dropped_owner_is_reused_and_stoppable(make, connect, data_dir) -> None:
    owner = EmbeddedRedis(data_dir)  # not via make(): nothing keeps a reference
    await owner.start()
    pid = owner.proc.pid
    writer = connect(owner.url)
    await writer.set("k", "v")
    await writer.aclose()
    del owner  # "crashed" owner: never called stop()
    gc.collect()
    assert alive(pid)  # dropping the object must not take the server down

    heir = make()
    client = connect(await heir.start())
    assert heir.proc is None
    assert servers_for(data_dir) == [pid]
    assert await client.get("k") == "v"

    await client.aclose()
    await heir.stop()  # stopping works for a server this instance did not start
    assert not alive(pid)


async def test_failed_start_reports_log_tail(make, monkeypatch, data_dir) -> None:
    def bad_config(self: EmbeddedRedis) -> None:
        Path(self.conf_path).write_text("no-such-directive yes\n")

    monkeypatch.setattr(EmbeddedRedis, "_write_config", bad_config)
    with pytest.raises(RuntimeError, match="no-such-directive"):
        await make().start()
    assert servers_for(data_dir) == []


async def test_socket_path_too_long_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too long"):
        await EmbeddedRedis(str(tmp_path / ("x" * 120))).start()
    assert embedded.MAX_SOCKET_PATH < 108
