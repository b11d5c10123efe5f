"""``--workers N``: one ``python run.py``, several node processes behind one port.

Each worker is a full node (its own node id, reported by /health) sharing the
data dir's SQLite file and the one embedded redis-server; a notification
posted through one worker reaches sockets held by another, a killed worker
is replaced, and SIGTERM drains them all and exits 0.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from typing import Iterator

import pytest

from tests.harness import ROOT, WS, Node, call, new_user, ws_connect

WORKERS = 2


def children(pid: int) -> dict[int, str]:
    """The direct children of ``pid`` and their command names (from /proc)."""
    out: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                head, _, tail = f.read().rpartition(")")
        except OSError:
            continue
        fields = tail.split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(entry)] = head.partition("(")[2]
    return out


def workers_of(node: Node) -> set[int]:
    assert node.proc is not None
    return {pid for pid, name in children(node.proc.pid).items() if name.startswith("python")}


async def poll(check, attempts: int = 600, pause: float = 0.1):
    """Retry ``check`` until it returns something truthy (no wall-clock assertions)."""
    for _ in range(attempts):
        got = await check()
        if got:
            return got
        await asyncio.sleep(pause)
    raise AssertionError("condition never held")


async def connections_by_node(node: Node, rounds: int = 40) -> dict[str, int]:
    """Ask /health many times (each a new connection, so any worker answers): node id -> its sockets."""
    seen: dict[str, int] = {}
    for _ in range(rounds):
        r = await call(node, "GET", "/health")
        if r.status == 200:
            seen[r.body["node"]] = r.body["websocket"]["connections"]
    return seen


@pytest.fixture
def workers_node() -> Iterator[Node]:
    node = Node(extra=["--workers", str(WORKERS)]).start()
    yield node
    code = node.stop(timeout=60)
    assert code == 0, node.log()
    shutil.rmtree(node.data_dir, ignore_errors=True)


async def test_every_worker_is_a_node_and_a_post_reaches_sockets_on_the_others(workers_node):
    node = workers_node
    await poll(lambda: _all_answer(node))
    user = await new_user(node)
    phone = await user.device("mobile")
    sockets: list[WS] = []

    async def spread() -> dict[str, int] | None:
        # The kernel hands each connection to whichever worker accepts first;
        # open sockets until both workers hold some.
        device = await user.device("web")
        ws = await ws_connect(node, user.token, device)
        sockets.append(ws)
        counts = await connections_by_node(node)
        return counts if len(counts) == WORKERS and all(counts.values()) else None

    counts = await poll(spread, attempts=60, pause=0)
    assert sum(counts.values()) == len(sockets), counts
    posted = [(await user.post(f"n{i}", device=phone))["id"] for i in range(5)]
    for ws in sockets:
        got = []
        while len(got) < len(posted):
            frame = await ws.recv_type("new_notification", timeout=30)
            got.append(frame["data"]["id"])
        assert got == posted
        ws.close()


async def _all_answer(node: Node) -> bool:
    return len(await connections_by_node(node, rounds=10)) == WORKERS


async def test_a_killed_worker_is_replaced_and_its_sockets_reconnect(workers_node):
    node = workers_node
    await poll(lambda: _all_answer(node))
    before = workers_of(node)
    assert len(before) == WORKERS
    old_ids = set(await connections_by_node(node))
    user = await new_user(node)
    phone = await user.device("mobile")
    device = await user.device("web")
    victim = sorted(before)[0]
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> set[int] | None:
        now = workers_of(node)
        return now if len(now) == WORKERS and victim not in now else None

    after = await poll(replaced)
    assert before - after == {victim}
    ids = await poll(lambda: _new_node_answers(node, old_ids))
    assert len(ids) == WORKERS
    # Serving goes on: a socket connects (to either worker) and gets what is posted.
    ws = await ws_connect(node, user.token, device)
    nid = (await user.post("after the kill", device=phone))["id"]
    frame = await ws.recv_type("new_notification", timeout=30)
    assert frame["data"]["id"] == nid
    ws.close()


async def _new_node_answers(node: Node, old_ids: set[str]) -> set[str] | None:
    ids = set(await connections_by_node(node, rounds=10))
    return ids if ids - old_ids else None


async def test_sigterm_drains_every_worker_and_exits_0():
    node = Node(extra=["--workers", str(WORKERS)]).start()
    try:
        await poll(lambda: _all_answer(node))
        user = await new_user(node)
        ws = await ws_connect(node, user.token, await user.device("web"))
        pids = workers_of(node)
        assert len(pids) == WORKERS
        assert node.stop(timeout=60) == 0, node.log()
        assert await ws.wait_closed(timeout=30) == 1001  # drained like a single node: going away
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}") or _zombie(pid), f"worker {pid} outlived the parent"
        assert not os.path.exists(os.path.join(node.data_dir, "redis.sock")), "the embedded redis was left running"
    finally:
        node.kill()
        shutil.rmtree(node.data_dir, ignore_errors=True)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers"),
    (["--workers", "many"], "--workers"),
    (["--redis-sentinels", "127.0.0.1:26379"], "--redis-master"),
    (["--redis-master", "mymaster"], "--redis-sentinels"),
    (["--redis-sentinels", "127.0.0.1", "--redis-master", "m"], "host:port"),
    (["--redis-sentinels", "127.0.0.1:1", "--redis-master", "m", "--redis-url", "redis://x"], "either"),
    (["--redis-wait", "-1"], "--redis-wait"),
])
def test_bad_scale_flags_exit_2_with_one_line(flags, message):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *flags], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
