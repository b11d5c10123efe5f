"""Processes and faults for bench/chaos.py: which server code runs, the nodes
on one shared data dir and their embedded redis, and the fault schedule
(node and redis SIGKILLs during the load).

Nothing here imports the server: a node is ``python run.py --port P
--data-dir D`` started with cwd = the server checkout under test, so the
same script measures any checkout. Ideas (readiness on /health, the redis
pid from ``<data-dir>/redis.pid`` checked against /proc before any signal)
are taken from tests/harness.py and bench/node.py, not imported.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from typing import Any

import aiohttp

HOST = "127.0.0.1"  # where the nodes listen, and so where all traffic goes
START_TIMEOUT = 30.0   # s for a (re)started node to answer /health
STOP_TIMEOUT = 20.0    # s after SIGTERM before SIGKILL at the end
START_TRIES = 3        # a node that fails to come back this often stops the fault schedule


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def checkout(server_dir: str) -> dict[str, Any]:
    """Which server code runs: commit, edited files and a fingerprint of the edits (a tree may be mid-work,
    and every restarted node loads what is on disk at that moment)."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", server_dir, *cmd], capture_output=True, text=True,
                                  timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    skip = (":!bench", ":!tests", ":!docs", ":!*.md")  # what the server does not run
    digest = hashlib.sha1(git("diff", "HEAD", "--", ".", *skip).encode())
    changed = git("diff", "HEAD", "--name-only", "--", ".", *skip).split()
    for name in git("ls-files", "--others", "--exclude-standard", "--", ".", *skip).split():
        changed.append(name)
        try:
            with open(os.path.join(server_dir, name), "rb") as f:
                digest.update(name.encode() + f.read())
        except OSError:
            pass
    return {"dir": server_dir, "commit": git("rev-parse", "--short", "HEAD").strip(),
            "changed_files": len(changed), "changed": changed[:30], "fingerprint": digest.hexdigest()[:12]}


def pid_is_redis_of(pid: int, data_dir: str) -> bool:
    """True while pid is a live redis-server whose command line names data_dir (never a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and b"redis-server" in cmdline and data_dir.encode() in cmdline


class Node:
    def __init__(self, index: int, server_dir: str, python: str, data_dir: str, log_dir: str,
                 extra: list[str]) -> None:
        self.index, self.server_dir, self.python = index, server_dir, python
        self.data_dir, self.extra = data_dir, extra
        self.port = free_port()
        self.log_path = os.path.join(log_dir, f"node{index}-{self.port}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts, self.started_at = 0, 0.0
        self.up = False

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def spawn(self) -> None:
        self.starts, self.started_at = self.starts + 1, time.monotonic()  # the event loop's clock too
        args = [self.python, "run.py", "--port", str(self.port), "--data-dir", self.data_dir,
                "--log-level", "INFO", *self.extra]
        with open(self.log_path, "ab") as log:
            log.write(f"=== chaos: start #{self.starts} at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            # Its own session: a Ctrl-C meant for the chaos run must not reach it first.
            # The run registers all its users from 127.0.0.1 within a second, past the
            # shipped 10 an hour per address; by environment, so that a checkout from
            # before the flag existed still starts (--server-arg overrides it).
            env = {"NOTISYNC_REGISTER_RATE": "0", **os.environ, "PYTHONPATH": self.server_dir}
            self.proc = subprocess.Popen(args, cwd=self.server_dir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=env)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = START_TIMEOUT) -> float:
        """Seconds until /health answers (200, or 503 = degraded but serving)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"node {self.index} exited with {self.proc and self.proc.returncode}")
            try:
                async with session.get(self.base + "/health", timeout=aiohttp.ClientTimeout(total=1)) as r:
                    await r.read()
                self.up = True
                return time.monotonic() - started
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                await asyncio.sleep(0.1)
        raise RuntimeError(f"node {self.index} did not answer /health within {timeout:g}s")

    def sigkill(self) -> None:
        self.up = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; the exit code (None if we had to kill it)."""
        self.up = False
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


class Cluster:
    """N nodes sharing one --data-dir, so one SQLite file and one embedded redis."""

    def __init__(self, server_dir: str, python: str, root: str, nodes: int, extra: list[str],
                 track_versions: bool) -> None:
        self.server_dir, self.track_versions = server_dir, track_versions
        self.versions: Counter[str] = Counter()  # fingerprint of the server tree at each node start
        self.data_dir = os.path.join(root, "data")
        self.log_dir = os.path.join(root, "logs")
        os.makedirs(self.data_dir, mode=0o700)
        os.makedirs(self.log_dir)
        self.nodes = [Node(i, server_dir, python, self.data_dir, self.log_dir, extra) for i in range(nodes)]
        self.redis_pids: set[int] = set()

    def redis_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "redis.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        if pid_is_redis_of(pid, self.data_dir):
            self.redis_pids.add(pid)  # every redis we ever saw is ours to reap at the end
            return pid
        return None

    def parent_node(self, pid: int) -> Node | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return None
        return next((n for n in self.nodes if n.proc is not None and n.proc.pid == ppid), None)

    async def spawn(self, node: Node) -> None:
        if self.track_versions:  # a tree being edited meanwhile runs different code in each start
            self.versions[(await asyncio.to_thread(checkout, self.server_dir))["fingerprint"]] += 1
        node.spawn()

    async def start(self, session: aiohttp.ClientSession) -> None:
        for node in self.nodes:  # one at a time: the first spawns the redis, the others reuse it
            await self.spawn(node)
            await node.wait_ready(session)
            self.redis_pid()

    async def restart(self, node: Node, session: aiohttp.ClientSession) -> float:
        for attempt in range(START_TRIES):
            await self.spawn(node)
            try:
                took = await node.wait_ready(session)
                self.redis_pid()
                return took
            except RuntimeError:
                node.sigkill()
                if attempt == START_TRIES - 1:
                    raise
        return 0.0

    def shutdown(self) -> dict[str, Any]:
        """Graceful stop (last node first), then reap whatever redis is left."""
        self.redis_pid()
        codes = {f"node{n.index}": n.terminate() for n in reversed(self.nodes)}
        left = self._reap_redis()
        return {"exit_codes": codes, "redis_left_running": left}

    def emergency_kill(self) -> None:
        """Synchronous last resort (Ctrl-C, exception): SIGKILL everything we started."""
        for node in self.nodes:
            try:
                node.sigkill()
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.redis_pid()
        self._reap_redis()

    def _reap_redis(self) -> list[int]:
        left = [pid for pid in sorted(self.redis_pids) if pid_is_redis_of(pid, self.data_dir)]
        for pid in left:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + 5
                while pid_is_redis_of(pid, self.data_dir) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not pid_is_redis_of(pid, self.data_dir):
                    break
        return left


# -- faults --------------------------------------------------------------------------
async def run_faults(cluster: Cluster, session: aiohttp.ClientSession, rng: random.Random, t0: float,
                     duration: float, kills: int, redis_kills: int, load_done: asyncio.Event,
                     say: Any) -> dict[str, Any]:
    """Node SIGKILLs (each restarted on its port after 0.5-1 s) and redis SIGKILLs, during the load.

    Never kills a node while another is down: the cluster always keeps one
    node serving. A fault still due when the load ends is skipped (and
    reported), never run during the drain or the settle. The kinds' order and
    the nodes hit come from rng alone; the times also depend on restart times.
    """
    loop = asyncio.get_running_loop()
    kinds = ["node"] * kills + ["redis"] * redis_kills
    rng.shuffle(kinds)
    start, end = t0 + min(2.0, duration * 0.1), t0 + duration - min(1.0, duration * 0.05)
    out: dict[str, Any] = {"node_kills": 0, "redis_kills": 0, "skipped": 0, "restart_s": [], "log": [],
                           "redis_back_s": [], "crashes": [], "failed": None}

    async def watch(until: float) -> None:
        """Wait until then (or the load's end), restarting any node that exited without being killed."""
        while loop.time() < until and not load_done.is_set():
            for node in cluster.nodes:
                if node.up and node.proc is not None and node.proc.poll() is not None:
                    at = round(loop.time() - t0, 2)
                    out["crashes"].append([at, f"node{node.index}", node.proc.returncode])
                    say(f"[{at:6.1f}s] node {node.index} EXITED BY ITSELF (code {node.proc.returncode}); restarting it")
                    node.up = False
                    try:
                        await cluster.restart(node, session)
                    except RuntimeError as exc:
                        out["failed"] = f"node {node.index} did not come back after exiting: {exc}"
            await asyncio.sleep(0.1)
    watchers: list[asyncio.Task[None]] = []

    async def redis_back(killed: int, at: float) -> None:
        while loop.time() - at < duration + 30:  # bounded; cancelled anyway once the run is over
            pid = cluster.redis_pid()
            if pid is not None and pid != killed:
                out["redis_back_s"].append(round(loop.time() - at, 2))
                parent = cluster.parent_node(pid)  # a node already running when redis died supervises it
                how = ("by an unknown process" if parent is None else
                       f"by node {parent.index}, already running (supervised)" if parent.started_at < at else
                       f"by node {parent.index} starting up")
                out["log"].append([round(loop.time() - t0, 2), "redis", f"back, pid {pid}, started {how}"])
                say(f"[{loop.time() - t0:6.1f}s] embedded redis back (pid {pid}) {loop.time() - at:.2f}s after "
                    f"its kill, started {how}")
                return
            await asyncio.sleep(0.2)

    cycles: list[float] = []  # seconds from a node kill to that node serving again
    for i, kind in enumerate(kinds):
        # Wait a random share (mean: an equal share) of the time left once the kill-restart cycles still
        # to come are set aside, so that slow restarts (a busy machine) shorten the gaps rather than
        # push faults past the load.
        now, cycle = max(loop.time(), start), sum(cycles) / len(cycles) if cycles else 2.0
        spare = end - now - cycle * (len(kinds) - i)
        await watch(now + rng.uniform(0.0, 2.0) * max(spare, 0.0) / (len(kinds) - i))
        if kind == "redis" and cluster.redis_pid() is None and "node" in kinds[i + 1:]:
            j = kinds.index("node", i + 1)  # redis still down from the last kill: kill a node first
            kinds[i], kinds[j], kind = "node", "redis", "node"
        while not load_done.is_set() and not (all(n.up for n in cluster.nodes)
                                              and (kind == "node" or cluster.redis_pid() is not None)):
            await asyncio.sleep(0.05)  # a restart is still under way, or the redis is not back yet
        if load_done.is_set():
            out["skipped"] += 1
            continue
        at = round(loop.time() - t0, 2)
        if kind == "redis":
            pid = cluster.redis_pid()
            if pid is None:
                out["log"].append([at, "redis", "no live redis to kill"])
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            out["redis_kills"] += 1
            out["log"].append([at, "redis", f"SIGKILL pid {pid}"])
            gone = loop.time() + 2.0
            while pid_is_redis_of(pid, cluster.data_dir) and loop.time() < gone:
                await asyncio.sleep(0.01)  # until it is gone, so the next fault cannot pick the same pid
            say(f"[{at:6.1f}s] SIGKILL embedded redis (pid {pid})")
            watchers.append(asyncio.ensure_future(redis_back(pid, loop.time())))
            continue
        node, killed_at = rng.choice(cluster.nodes), loop.time()
        node.sigkill()
        out["node_kills"] += 1
        say(f"[{at:6.1f}s] SIGKILL node {node.index} (port {node.port})")
        await asyncio.sleep(rng.uniform(0.5, 1.0))
        try:
            took = await cluster.restart(node, session)
        except RuntimeError as exc:
            out["failed"] = f"node {node.index} did not come back: {exc}"
            say(f"[{at:6.1f}s] node {node.index} did not come back; faults stop: {exc}")
            break
        out["restart_s"].append(round(took, 2))
        cycles.append(loop.time() - killed_at)
        out["log"].append([at, f"node{node.index}", f"SIGKILL, back after {took:.2f}s"])
        say(f"[{loop.time() - t0:6.1f}s] node {node.index} answering again, {took:.2f}s after its restart")
    await watch(t0 + duration + 3600)  # returns when the load ends
    for node in cluster.nodes:  # the settle needs every node serving
        if not node.up and out["failed"] is None:
            try:
                await cluster.restart(node, session)
            except RuntimeError as exc:
                out["failed"] = str(exc)
    if watchers:
        await asyncio.wait(watchers, timeout=35)
        for w in watchers:
            w.cancel()
    out["redis_not_back"] = out["redis_kills"] - len(out["redis_back_s"])
    return out
