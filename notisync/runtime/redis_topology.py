"""Which Redis a node talks to: one server by URL, the primary Redis Sentinel names, or a Redis Cluster.

With ``--redis-sentinels host:port,…`` and ``--redis-master NAME`` every
connection asks the sentinels for the current primary when it opens (redis-py's
``redis.asyncio.sentinel``). When the primary dies, the open connections break;
requests in flight get 503 (the client retries), the bus reconnects with
backoff, and once Sentinel has promoted a replica the new connections land on
it: the bus re-subscribes and the node re-syncs every socket and sweeps the
pending notifications (``Services._redis_back``), exactly as after a Redis
restart. A connection still open to a demoted primary gets READONLY, which
redis-py turns into a reconnect.

With ``--redis-cluster`` the ``--redis-url`` names any node of a Redis
Cluster (redis-py's ``redis.asyncio.cluster``): commands go to the primary
owning each key's slot, every key of one user shares a slot (the hash tag in
``store/keys.py``), and the bus holds shard subscriptions
(``store/shard_bus.py``).
"""
from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from notisync.runtime.ops_settings import yes
from store.resp_pack import pack_faster

POOL_SIZE = 64
CLUSTER_POOL_SIZE = 512
TIMEOUTS: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}

# flag name -> (env var, type, help); merged into notisync.runtime.config's flags.
SENTINEL_FLAGS: dict[str, tuple[str, type, str]] = {
    "redis-sentinels": ("NOTISYNC_REDIS_SENTINELS", str,
                        "host:port,… of Redis Sentinels (with --redis-master; instead of --redis-url)"),
    "redis-master": ("NOTISYNC_REDIS_MASTER", str, "the primary's name the sentinels monitor"),
    "redis-cluster": ("NOTISYNC_REDIS_CLUSTER", yes,
                      "--redis-url names a node of a Redis Cluster (7.0+): keys sharded by user, sharded pub/sub"),
    "redis-wait": ("NOTISYNC_REDIS_WAIT", int,
                   "replicas that must have a fan-out before it is answered (WAIT, 1 s at most); 0: off"),
}


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's primary discovery with the blocking pool's wait for a free connection under load."""


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` -> [(host, port)]; ValueError with the bad part."""
    out = []
    for part in (p.strip() for p in value.split(",")):
        host, sep, port = part.rpartition(":")
        if not part or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"--redis-sentinels wants host:port,host:port,… (bad part {part!r})")
        out.append((host.strip("[]"), int(port)))
    return out


def check(settings: Any) -> str | None:
    """Normalise in place; a one-line error if the Redis flags do not fit together."""
    settings.redis_wait = int(settings.redis_wait)
    settings.redis_cluster = yes(settings.redis_cluster)
    if settings.redis_wait < 0:
        return "--redis-wait must be 0 (off) or a number of replicas"
    if settings.redis_cluster:
        if not settings.redis_url or settings.redis_sentinels:
            return "--redis-cluster needs --redis-url naming one node of the cluster (and no --redis-sentinels)"
        if settings.redis_wait:
            return "--redis-wait is for a primary with replicas under Sentinel, not for --redis-cluster"
    settings.redis_sentinels = settings.redis_sentinels or None
    settings.redis_master = settings.redis_master or None
    if settings.redis_sentinels is None:
        return "--redis-master needs --redis-sentinels" if settings.redis_master else None
    if settings.redis_url:
        return "give either --redis-url or --redis-sentinels, not both"
    if not settings.redis_master:
        return "--redis-sentinels needs --redis-master NAME (the name the sentinels monitor)"
    try:
        parse_sentinels(settings.redis_sentinels)
    except ValueError as exc:
        return str(exc)
    return None


def describe(settings: Any) -> str:
    if settings.redis_cluster:
        return "cluster"
    return f"sentinel:{settings.redis_master}@{settings.redis_sentinels}" if settings.redis_sentinels else "external"


class RedisTopology:
    """Builds the node's command client and the bus's own pool for one topology."""

    def __init__(self, url: str | None, sentinels: str | None = None, master: str | None = None,
                 cluster: bool = False) -> None:
        self.url, self.master, self.cluster = url, master, cluster
        self.sentinel = Sentinel(parse_sentinels(sentinels), **TIMEOUTS) if sentinels else None

    def cluster_client(self, client_name: str) -> RedisCluster:
        # max_connections is per cluster node; past it redis-py raises rather
        # than waits, so it is set well above what the fan-out batches use.
        return RedisCluster.from_url(self.url, max_connections=CLUSTER_POOL_SIZE, client_name=client_name,
                                     **TIMEOUTS)

    def client(self, client_name: str) -> Redis:
        # A blocking pool waits for a free connection under load instead of
        # failing the request the moment the pool is exhausted. The name lets
        # the embedded server's shutdown tell this node's connections from
        # other nodes' (CLIENT LIST).
        if self.sentinel is not None:
            pool: ConnectionPool = _BlockingSentinelPool(
                self.master, self.sentinel, max_connections=POOL_SIZE, timeout=5, client_name=client_name,
                **TIMEOUTS)
            return Redis(connection_pool=pack_faster(pool))
        pool = BlockingConnectionPool.from_url(self.url, max_connections=POOL_SIZE, timeout=5,
                                               client_name=client_name, **TIMEOUTS)
        return Redis(connection_pool=pack_faster(pool))

    def bus_pool(self, client_name: str) -> ConnectionPool:
        # No read timeout on the bus: it idles until something is published.
        if self.sentinel is not None:
            return SentinelConnectionPool(self.master, self.sentinel, socket_timeout=None, socket_connect_timeout=5,
                                          client_name=client_name)
        return ConnectionPool.from_url(self.url, socket_timeout=None, socket_connect_timeout=5,
                                       client_name=client_name)
