"""The shared batcher's linger (store/batching.py): under load a new batch
waits for company; after a quiet spell, or behind a running batch, it does not.

Times here are generous (a linger of 0.3 s and a busy window of 1 s against
gaps of 10-60 ms; a quiet spell of 0.3 s against a window of 0.1 s), so what
is asserted is which calls shared a batch, never how fast anything ran.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest

from store.batching import Batcher, Outcome
from store.sqlite import SQLiteStore
from tests.harness import Node, new_user, ws_connect
from tests.test_store_contract import list_ids, note

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINGER = 0.3
BUSY = 1.0  # calls closer than this count as load


class Recorder(Batcher[str]):
    """Answers each call with its own payload and remembers the batches."""

    def __init__(self, linger: float, busy_for: float = 0.0, busy: float = BUSY) -> None:
        super().__init__(max_batch=100, linger=linger, busy=busy)
        self.batches: list[list[str]] = []
        self._busy_for = busy_for  # how long a batch takes to run

    async def _run_batch(self, payloads: list[str]) -> list[Outcome]:
        self.batches.append(list(payloads))
        if self._busy_for:
            await asyncio.sleep(self._busy_for)
        return [(True, p) for p in payloads]


async def later(delay: float, batcher: Recorder, payload: str) -> Any:
    await asyncio.sleep(delay)
    return await batcher.submit(payload)


async def test_under_load_a_new_batch_waits_for_the_next_call() -> None:
    b = Recorder(LINGER)
    assert await b.submit("a") == "a"  # the first call after a quiet spell runs alone, at once
    # "b" comes right after "a" (load): its batch lingers, and "c", 60 ms later, joins it.
    assert await asyncio.gather(b.submit("b"), later(0.06, b, "c")) == ["b", "c"]
    assert b.batches == [["a"], ["b", "c"]]


async def test_after_a_quiet_spell_a_call_runs_at_once() -> None:
    b = Recorder(LINGER, busy=0.1)
    await b.submit("a")
    await asyncio.sleep(0.3)
    # Had "b" lingered, "c" (60 ms later) would have shared its batch.
    assert await asyncio.gather(b.submit("b"), later(0.06, b, "c")) == ["b", "c"]
    assert b.batches == [["a"], ["b"], ["c"]]


async def test_without_a_linger_every_batch_starts_at_once() -> None:
    b = Recorder(0.0)
    await b.submit("a")
    await asyncio.gather(b.submit("b"), later(0.01, b, "c"))
    assert b.batches == [["a"], ["b"], ["c"]]


async def test_calls_queued_behind_a_running_batch_do_not_linger() -> None:
    b = Recorder(LINGER, busy_for=0.1)
    # "b" queues while "a" runs; it runs right after. Had it lingered after
    # "a" ended, "c" (150 ms in) would have joined it.
    await asyncio.gather(b.submit("a"), later(0.01, b, "b"), later(0.15, b, "c"))
    assert b.batches == [["a"], ["b"], ["c"]]


async def test_a_lingering_batch_cancelled_with_the_loop_leaves_no_caller_waiting() -> None:
    b = Recorder(LINGER)
    await b.submit("a")
    caller = asyncio.ensure_future(b.submit("b"))
    await asyncio.sleep(0.01)
    assert b._task is not None
    b._task.cancel()  # what loop shutdown does to the batcher's task
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, 5)
    assert b.batches == [["a"]]
    assert await b.submit("c") == "c"  # and the batcher still works


async def test_sqlite_writes_under_load_share_a_commit_and_are_all_stored(tmp_path: Any) -> None:
    store = SQLiteStore(str(tmp_path / "notisync.sqlite3"), linger=LINGER)
    await store.open()
    assert store._writer is not None
    store._writer._busy = BUSY  # the write just before counts as load, however slow this machine
    try:
        first = note("u1")
        await store.create_notification(first)
        commits = []
        run = store._run

        async def counting(fn: Any) -> Any:
            commits.append(fn)
            return await run(fn)

        store._writer._run = counting
        more = [note("u1") for _ in range(3)]

        async def create(delay: float, n: dict[str, Any]) -> Any:
            await asyncio.sleep(delay)
            return await store.create_notification(n)

        results = await asyncio.gather(*(create(0.02 * i, n) for i, n in enumerate(more)))
        assert [created for _, created in results] == [True, True, True]
        assert len(commits) == 1  # one transaction for the three, opened under load
        assert sorted(await list_ids(store, "u1")) == sorted(n["id"] for n in [first, *more])
    finally:
        await store.close()


@pytest.mark.parametrize("value", ["-1", "51", "nan", "soon"])
def test_a_bad_linger_is_refused_at_start_with_one_line_and_exit_2(tmp_path: Any, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTISYNC_")}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--data-dir", str(tmp_path),
                           "--batch-linger-ms", value], capture_output=True, text=True, env=env, cwd=ROOT, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--batch-linger-ms" in lines[0], proc.stderr


async def test_a_node_with_a_linger_delivers_every_notification_of_a_burst_once(tmp_path: Any) -> None:
    node = Node(data_dir=str(tmp_path / "node"), extra=["--batch-linger-ms", "20"]).start()
    try:
        user = await new_user(node)
        phone = await user.device("mobile")
        web = await user.device("web")
        ws = await ws_connect(node, user.token, web)
        # Three waves of ten posts 3 ms apart: under load by the batcher's
        # measure, so writes and fan-outs wait for company (and some queue
        # behind a running batch).

        async def post(delay: float, title: str) -> str:
            await asyncio.sleep(delay)
            return (await user.post(title, device=phone))["id"]

        posted: list[str] = []
        for wave in range(3):
            posted += await asyncio.gather(*(post(0.003 * i, f"w{wave}n{i}") for i in range(10)))
        got = [(await ws.recv_type("new_notification"))["data"]["id"] for _ in posted]
        assert sorted(got) == sorted(posted) and len(set(got)) == len(posted)
        await ws.expect_silence(0.3)
        listed = await user.call("GET", "/api/v1/notifications?limit=100")
        assert sorted(n["id"] for n in listed.body["notifications"]) == sorted(posted)
        ws.close()
    finally:
        assert node.stop() == 0
