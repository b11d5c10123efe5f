"""Wiring: build every service from Settings, run the background loops, stop cleanly."""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from notisync.core.accounts import AccountService
from notisync.core.apikeys import ApiKeyService
from notisync.core.bulk import BulkService
from notisync.core.auth import TokenService, load_or_create_secret
from notisync.core.devicepolicy import PreferenceService
from notisync.core.devices import DeviceService
from notisync.core.digest import DigestService
from notisync.core.preferences import compile_all
from notisync.core.rulebook import RuleService
from notisync.core.notifications import NotificationService
from notisync.core.passwords import Passwords
from notisync.core.pending import PendingClears
from notisync.core.sessions import SessionService
from notisync.core.stats import StatsService
from notisync.core.throttle import SignInLimits
from notisync.delivery.fanout import FanOut
from notisync.delivery.hub import Hub
from notisync.delivery.liveness import Liveness
from notisync.delivery.positions import TICK_SECONDS, Positions
from notisync.delivery.recipients import Recipients
from notisync.delivery.replay import Delivery
from notisync.errors import Unavailable
from notisync.hooks import hooks
from notisync.runtime.config import Settings
from notisync.runtime.embedded import EmbeddedRedis
from notisync.runtime.hygiene import secure_data_dir
from notisync.runtime.lifecycle import Lifecycle
from notisync.runtime.redis_topology import RedisTopology
from notisync.runtime.limits import POST_BURST_FACTOR, POST_RESERVE, login_rates
from store.bus import Bus
from store.shard_bus import ShardedBus
from store.documents import DocumentStore, utcnow
from store.keys import Keys
from store.presence import Presence
from store.ratelimit import RateLimit
from store.streams import Streams

log = logging.getLogger(__name__)

PENDING_FLUSH_SECONDS = 1.0
SWEEP_SECONDS = 2.0
PURGE_SECONDS = 600.0


def make_store(settings: Settings) -> DocumentStore:
    if settings.mongo_url:
        from store.mongo import MongoStore

        return MongoStore.from_url(settings.mongo_url)
    from store.sqlite import SQLiteStore

    return SQLiteStore(os.path.join(settings.data_dir, "notisync.sqlite3"), linger=settings.batch_linger)


def client_name(settings: Settings) -> str:
    """The name this node's Redis connections carry (CLIENT LIST), see ``RedisTopology.client``."""
    return f"notisync-{settings.node_id}"


async def _undo_start(embedded: EmbeddedRedis | None, store: DocumentStore, redis: "Redis | RedisCluster | None",
                      name: str) -> None:
    if redis is not None:
        await _close(redis)
    try:
        await store.close()
    except Exception as exc:  # the store may never have opened
        log.debug("closing the store after a failed start: %s", exc)
    if embedded is not None and embedded.proc is not None:
        await embedded.stop(ignore_client=name)


async def _close(redis: "Redis | RedisCluster") -> None:
    if isinstance(redis, RedisCluster):
        await redis.aclose()  # closes every node's connections
    else:
        await redis.aclose(close_connection_pool=True)


class Services:
    """Every service of one node, built completely (``Services.create``) before anything uses it.

    The delivery path, in order: ``core/notifications.py`` (ingest) ->
    ``delivery/fanout.py`` (append + wake) -> ``store/streams.py`` (the
    script) -> ``delivery/replay.py`` (this node's sockets; other nodes via
    ``store/bus.py`` and ``delivery/events.py``) -> ``handlers/ws.py`` and
    ``handlers/outbox.py`` (bytes on the socket).
    """

    def __init__(self, settings: Settings, embedded: EmbeddedRedis | None, topology: RedisTopology,
                 store: DocumentStore, redis: "Redis | RedisCluster", tokens: TokenService) -> None:
        s = self.settings = settings
        self.embedded, self.store, self.redis, self.tokens = embedded, store, redis, tokens
        self.redis_url = topology.url  # None with Sentinel; any node's with --redis-cluster
        self.lifecycle = Lifecycle()
        self.client_name = client_name(settings)
        self.keys = Keys(s.key_prefix)
        self.hub = Hub()
        cluster = isinstance(redis, RedisCluster)
        self.streams = Streams(redis, self.keys, wait_replicas=s.redis_wait, cluster=cluster, linger=s.batch_linger)
        self.presence = Presence(redis, self.keys, s.presence_ttl, cluster=cluster)
        self.bus: Bus = (
            ShardedBus(redis, self.keys, s.node_id, client_name=self.client_name) if isinstance(redis, RedisCluster)
            else Bus(topology.url, redis, self.keys, s.node_id, client_name=self.client_name,
                     pool=topology.bus_pool(self.client_name)))
        self.recipients = Recipients(store, self.streams, policies=compile_all)
        self.liveness = Liveness(self.hub, self.presence, self.bus, s.node_id)
        self.delivery = Delivery(self.hub, self.streams, self.bus, self.liveness, self.recipients,
                                 max_sockets_per_device=s.max_sockets_per_device)
        self.positions = Positions(self.hub, self.streams)
        self.fan_out = FanOut(self.streams, self.recipients, self.delivery, s.node_id)
        self.sessions = SessionService(store, redis, self.keys, tokens, self.delivery)
        self.devices = DeviceService(store, self.presence, self.streams, self.delivery, self.recipients, self.sessions,
                                     max_devices=s.max_devices)
        self.api_keys = self.sessions.api_keys = ApiKeyService(store, redis, self.keys, self.sessions, self.devices)
        per_pair, per_address = login_rates(s.login_rate)
        self.sign_in_limits = SignInLimits(redis, self.keys, per_pair, per_address, s.register_rate)
        self.passwords = Passwords(s.hash_concurrency)
        self.accounts = AccountService(store, self.sessions, self.devices, self.sign_in_limits, self.passwords)
        self.pending = PendingClears(store)
        self.post_rate = RateLimit(redis, s.post_rate, s.post_rate * POST_BURST_FACTOR, reserve=POST_RESERVE)
        self.rules = RuleService(store, redis, self.keys)
        self.notifications = NotificationService(
            store, self.fan_out, self.devices, self.pending,
            post_limit=(lambda user_id: self.post_rate.take(self.keys.post_rate(user_id))) if s.post_rate else None,
            rules=self.rules,
        )
        self.preferences = PreferenceService(store, self.devices, self.streams)
        self.digest = DigestService(store, self.notifications)
        self.bulk = BulkService(store, self.fan_out, self.devices)
        self.stats = StatsService(self.hub, self.presence)
        self._loops: list[asyncio.Task[None]] = []

    @classmethod
    async def create(cls, settings: Settings) -> "Services":
        """Open the store and Redis (starting the embedded one if no --redis-url), wire, start listening.

        If any step fails, what the earlier steps started is stopped again:
        a failed start leaves no redis-server behind.
        """
        secure_data_dir(settings.data_dir)  # before the secret is read or anything is created
        secret = settings.jwt_secret or load_or_create_secret(os.path.join(settings.data_dir, "jwt_secret"))
        external = settings.redis_url or settings.redis_sentinels
        embedded = EmbeddedRedis(settings.data_dir, settings.redis_maxmemory) if not external else None
        store = make_store(settings)
        redis: Redis | RedisCluster | None = None
        try:
            redis_url = settings.redis_url if embedded is None else await embedded.start()
            topology = RedisTopology(redis_url, settings.redis_sentinels, settings.redis_master, settings.redis_cluster)
            await store.open()
            name = client_name(settings)
            redis = topology.cluster_client(name) if settings.redis_cluster else topology.client(name)
            await redis.ping()  # fail the start now, not the first request, if Redis is out of reach
            tokens = TokenService(secret, settings.access_token_ttl)
            services = cls(settings, embedded, topology, store, redis, tokens)
            await services.bus.start(services.delivery.on_bus_message, services._redis_back)
        except BaseException:
            await _undo_start(embedded, store, redis, client_name(settings))
            raise
        services._start_loops()
        return services

    def _start_loops(self) -> None:
        s = self.settings
        self._loops = [
            *([asyncio.create_task(self.embedded.supervise())] if self.embedded else []),
            # Whatever a node that died (or this one, before a restart) left
            # stored but not fanned out goes out now, not after the grace.
            asyncio.create_task(self._once(self._sweep_all)),
            asyncio.create_task(self._every(SWEEP_SECONDS, self.notifications.sweep)),
            asyncio.create_task(self._every(PENDING_FLUSH_SECONDS, self.pending.flush)),
            asyncio.create_task(self._every(TICK_SECONDS, self.positions.tick)),
            asyncio.create_task(self._every(s.presence_ttl / 3, self.liveness.heartbeat)),
            asyncio.create_task(self._every(PURGE_SECONDS, self._purge)),
            # Due digests, including one missed while every node was down (catch-up at start).
            asyncio.create_task(self._once(self.digest.run_due)),
            asyncio.create_task(self._every(s.digest_interval, self.digest.run_due)),
        ]

    async def _redis_back(self) -> None:
        """The bus reconnected: re-read every socket's stream, and re-send what may have been lost."""
        await self.delivery.resync_all()
        # A Redis restarted from its append-only file may lack its last
        # second of appends; their notifications are still pending.
        await self._once(self._sweep_all)

    async def _sweep_all(self) -> None:
        await self.notifications.sweep(grace=0)

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        try:
            await self.pending.flush(everything=True)
        except Exception as exc:  # left pending, they are swept (idempotently) later
            log.warning("could not clear pending notifications on shutdown: %s", exc)
        try:
            await self.positions.save()
        except (RedisError, OSError) as exc:
            log.warning("could not save cursors on shutdown: %s", exc)
        await self.bus.stop()
        await _close(self.redis)
        await self.store.close()
        self.passwords.close()
        if self.embedded is not None:
            await self.embedded.stop(ignore_client=self.client_name)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        store_ok = redis_ok = True
        try:
            await asyncio.wait_for(self.store.ping(), 3)
        except Exception as exc:  # any failure of the dependency means "down"
            log.warning("store health check failed: %s", exc)
            store_ok = False
        try:
            await asyncio.wait_for(self.redis.ping(), 3)
            redis_ok = self.bus.connected
            if redis_ok and isinstance(self.redis, RedisCluster):
                # Every slot served: false from when a dead primary is marked
                # failed until its replica is promoted (its users get 503 meanwhile).
                info = await asyncio.wait_for(self.redis.cluster_info(), 3)
                redis_ok = info.get("cluster_state") == "ok"
        except Exception as exc:  # any failure of the dependency means "down"
            log.warning("redis health check failed: %s", exc)
            redis_ok = False
        ok = store_ok and redis_ok
        return ok, {
            "status": "ok" if ok else "degraded",
            "node": self.settings.node_id,  # which process answered (several behind one port: --workers)
            "websocket": {"status": "running", "connections": self.hub.count},
            "store": {"status": "ok" if store_ok else "down", "backend": self.store.backend},
            "redis": self._redis_health(redis_ok),
        }

    def _redis_health(self, ok: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok" if ok else "down", "embedded": self.embedded is not None}
        if self.embedded is not None:
            # "restarting": the supervisor is bringing the embedded server back.
            out.update(server=self.embedded.state, restarts=self.embedded.restarts)
        return out

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._once(job)

    async def _once(self, job: Any) -> None:
        try:
            await job()
        except (RedisError, OSError, Unavailable) as exc:
            hooks.error(exc)
            log.warning("%s failed: %s", getattr(job, "__name__", job), exc)
        except Exception:  # a background loop must survive any one failure
            log.exception("%s failed", getattr(job, "__name__", job))

    async def _purge(self) -> None:
        removed = await self.store.purge_expired(utcnow())
        if removed:
            log.info("purged %d expired notifications", removed)
