"""A Redis Cluster on loopback ports: three primaries with one replica each, joined by
``redis-cli --cluster create`` (Debian's redis-server and redis-tools, Redis 7.0,
installed by ``.ci/run``); a missing binary fails the test that needs it.
"""
from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from typing import Any

import redis
from redis.crc import key_slot

from tests.harness import short_tmpdir
from tests.redis_topologies import Proc, binary


CLUSTER_NODE_TIMEOUT_MS = 2000  # silence before a node is PFAIL; failover follows in ~1-2 s more
CLUSTER_BUS_OFFSET = 10000  # Redis puts a node's cluster bus on port + 10000


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def cluster_port(taken: set[int]) -> int:
    """A free loopback port whose bus port (+10000) is free too.

    ``free_port`` can return anything in the ephemeral range (up to 60999
    here), but a cluster node on a port above 55535 has no bus port. Both
    ports are taken below the ephemeral range when it leaves room (20000 up
    to 22767 here), where no outgoing connection or ``free_port`` lands
    between this check and the server's bind.
    """
    top = _ephemeral_low() - CLUSTER_BUS_OFFSET - 1
    if top < 21000:
        top = 65535 - CLUSTER_BUS_OFFSET
    for _ in range(1000):
        port = random.randint(20000, top)
        if not ({port, port + CLUSTER_BUS_OFFSET} & taken) and _port_free(port) \
                and _port_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def parse_cluster_nodes(text: str) -> list[dict[str, Any]]:
    """CLUSTER NODES as dicts: id, port, flags (set), master (id or None), slots (list of ranges)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        addr = parts[1].split("@")[0]
        ranges = []
        for spec in parts[8:]:
            if spec.startswith("["):
                continue  # a slot being imported or migrated: not owned yet
            lo, _, hi = spec.partition("-")
            ranges.append((int(lo), int(hi or lo)))
        out.append({"id": parts[0], "port": int(addr.rsplit(":", 1)[1]), "flags": set(parts[2].split(",")),
                    "master": None if parts[3] == "-" else parts[3], "connected": parts[7] == "connected",
                    "slots": ranges})
    return out


class ClusterSetup:
    """Three primaries with one replica each, joined by ``redis-cli --cluster create``."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self.dir = short_tmpdir()
        self.size = primaries * (1 + replicas)
        self.replicas = replicas
        self.servers: list[Proc] = []
        self.killed: dict[int, dict[str, Any]] = {}  # port -> {"id", "slots", "at"}

    def start(self) -> "ClusterSetup":
        server = binary("redis-server")
        version = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
        major = int(version.split("v=", 1)[1].split(".", 1)[0]) if "v=" in version else 0
        if major < 7:  # sharded pub/sub (SSUBSCRIBE) came with Redis 7.0
            raise AssertionError(f"{server} is not Redis 7+ ({version.strip()!r}): apt-get install redis-server")
        taken: set[int] = set()
        for _ in range(self.size):
            port = cluster_port(taken)
            taken |= {port, port + CLUSTER_BUS_OFFSET}
            self.servers.append(Proc([
                server, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "no", "--dbfilename", f"dump-{port}.rdb",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
                # A replica whose link has been down a while (a loaded test
                # machine) still stands for election; the test wants the
                # failover, not Redis's data-age guard.
                "--cluster-replica-validity-factor", "0",
                # Replicas' first sync starts at once, not after the 5 s a
                # primary waits by default for more replicas to share it.
                "--repl-diskless-sync-delay", "0",
            ], port, self.dir))
        # All on one host: redis-cli warns that replicas share their
        # primary's host, and --cluster-yes accepts the layout.
        create = subprocess.run(
            [binary("redis-cli"), "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=120)
        if create.returncode != 0:
            self.stop()
            raise RuntimeError(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
        self.wait_ready()
        return self

    # -- views

    def live(self) -> list[Proc]:
        return [s for s in self.servers if s.proc.poll() is None]

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def nodes_view(self, port: int) -> list[dict[str, Any]]:
        """What the node on ``port`` believes about the cluster.

        "CLUSTER", "NODES" as two words gets the raw text (redis-py's callback
        is keyed on "CLUSTER NODES"); ``parse_cluster_nodes`` gives it the
        shape the checks below use (ports, flag sets, slot ranges as ints).
        """
        with self.client(port) as c:
            return parse_cluster_nodes(c.execute_command("CLUSTER", "NODES"))

    def _info(self, port: int) -> dict[str, str]:
        with self.client(port) as c:
            text = c.execute_command("CLUSTER", "INFO")  # split form: raw text, no redis-py parsing
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primaries()[0].port}"

    def primaries(self) -> list[Proc]:
        """Live nodes that serve slots as primaries, by their own account."""
        out = []
        for s in self.live():
            me = next(n for n in self.nodes_view(s.port) if "myself" in n["flags"])
            if "master" in me["flags"] and me["slots"]:
                out.append(s)
        return out

    def primary_for_key(self, key: str) -> Proc:
        """The live primary serving ``key``'s slot, as a live node's CLUSTER NODES has it."""
        slot = key_slot(key.encode())
        view = self.nodes_view(self.live()[0].port)
        for n in view:
            if "master" in n["flags"] and "fail" not in n["flags"] \
                    and any(lo <= slot <= hi for lo, hi in n["slots"]):
                return next(s for s in self.servers if s.port == n["port"])
        raise LookupError(f"no live primary serves slot {slot} ({key!r})")

    # -- readiness

    def _settled(self, expect_nodes: int) -> bool:
        """Every live node: state ok, all slots ok, and the same non-failed layout (masters with slots, replicas)."""
        try:
            layouts = set()
            for s in self.live():
                info = self._info(s.port)
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
                view = [n for n in self.nodes_view(s.port) if "fail" not in n["flags"]]
                if len(view) != expect_nodes or any(
                        n["flags"] & {"fail?", "handshake", "noaddr"} or not n["connected"] for n in view):
                    return False
                layouts.add(tuple(sorted((n["port"], n["master"] or "", tuple(n["slots"])) for n in view)))
                if s.port not in self.killed:
                    with self.client(s.port) as c:
                        repl = c.info("replication")
                    if repl["role"] == "slave" and repl.get("master_link_status") != "up":
                        return False
            return len(layouts) == 1
        except (redis.RedisError, OSError, StopIteration):
            return False

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every node agrees on 3 primaries with slots and 3 replicas, each replica's link up.

        ``redis-cli --cluster create`` returns once slots are assigned; for
        a second or so after, nodes still list replicas as slotless masters
        and replicas are still taking their first sync.
        """
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._settled(self.size) and len(self.primaries()) == self.size // (1 + self.replicas):
                return
            time.sleep(0.2)
        raise RuntimeError("redis cluster never became ready:\n" + self._describe())

    def kill(self, proc: Proc) -> None:
        """SIGKILL one node, remembering its id and slots for ``wait_failover``."""
        me = next(n for n in self.nodes_view(proc.port) if "myself" in n["flags"])
        self.killed[proc.port] = {"id": me["id"], "slots": me["slots"], "at": time.monotonic()}
        proc.kill()

    def wait_failover(self, old: Proc, timeout: float = 60) -> float:
        """Until every live node says cluster ok with ``old``'s slots on a promoted replica.

        Returns seconds since ``kill(old)``. Until the survivors mark the
        dead node FAIL (node timeout, then a majority of primaries agreeing),
        CLUSTER INFO still says ok, so "ok" alone proves nothing here.
        """
        dead = self.killed[old.port]
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self._failed_over(dead):
                return time.monotonic() - dead["at"]
            time.sleep(0.1)
        raise RuntimeError(f"no failover of {old.port} within {timeout}s:\n" + self._describe())

    def _failed_over(self, dead: dict[str, Any]) -> bool:
        alive = {s.port for s in self.live()}
        try:
            for s in self.live():
                view = self.nodes_view(s.port)
                gone = next((n for n in view if n["id"] == dead["id"]), None)
                if gone is not None and ("fail" not in gone["flags"] or gone["slots"]):
                    return False
                for lo, hi in dead["slots"]:
                    owner = next((n for n in view if "master" in n["flags"]
                                  and any(a <= lo and hi <= b for a, b in n["slots"])), None)
                    if owner is None or owner["port"] not in alive:
                        return False
            return self._settled(len(alive))
        except (redis.RedisError, OSError):
            return False

    def _describe(self) -> str:
        out = []
        for s in self.live():
            try:
                with self.client(s.port) as c:
                    out.append(f"--- {s.port}\n{c.execute_command('CLUSTER', 'NODES')}")
            except redis.RedisError as exc:
                out.append(f"--- {s.port}: {exc}")
        return "\n".join(out)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
