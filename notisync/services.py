"""Wiring: build every service from Settings, run the background loops, stop cleanly."""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from notisync.accounts import AccountService
from notisync.auth import TokenService, load_or_create_secret
from notisync.config import Settings
from notisync.delivery import Delivery
from notisync.devices import DeviceService
from notisync.embedded import EmbeddedRedis
from notisync.hub import Hub
from notisync.recipients import Recipients
from notisync.runtime.metrics import hooks
from notisync.sync import NotificationService
from store.bus import Bus
from store.documents import DocumentStore, utcnow
from store.keys import Keys
from store.presence import Presence
from store.streams import Streams

log = logging.getLogger(__name__)

CURSOR_FLUSH_SECONDS = 1.0
PURGE_SECONDS = 600.0


def make_store(settings: Settings) -> DocumentStore:
    if settings.mongo_url:
        from store.mongo import MongoStore

        return MongoStore.from_url(settings.mongo_url)
    from store.sqlite import SQLiteStore

    return SQLiteStore(os.path.join(settings.data_dir, "notisync.sqlite3"))


def make_redis(url: str) -> Redis:
    # A blocking pool waits for a free connection under load instead of
    # failing the request the moment the pool is exhausted.
    pool = BlockingConnectionPool.from_url(
        url, max_connections=64, timeout=5, socket_timeout=5, socket_connect_timeout=5
    )
    return Redis(connection_pool=pool)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedRedis | None = None
        self.store = make_store(settings)
        self.hub = Hub()
        self.keys = Keys(settings.key_prefix)
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        s = self.settings
        os.makedirs(s.data_dir, exist_ok=True)
        secret = s.jwt_secret or load_or_create_secret(os.path.join(s.data_dir, "jwt_secret"))
        self.tokens = TokenService(secret)
        redis_url = s.redis_url
        if not redis_url:
            self.embedded = EmbeddedRedis(s.data_dir)
            redis_url = await self.embedded.start()
        self.redis_url = redis_url
        await self.store.open()
        self.redis = make_redis(redis_url)
        self.streams = Streams(self.redis, self.keys)
        self.presence = Presence(self.redis, self.keys, s.presence_ttl)
        self.recipients = Recipients(self.store, self.streams)
        self.delivery = Delivery(self.hub, self.streams, self.presence, s.node_id, self.recipients)
        await self.delivery.start()
        self.bus = Bus(redis_url, self.redis, self.keys, s.node_id, self.delivery.on_bus_message, self.delivery.resync_all)
        self.delivery.bus = self.bus
        await self.bus.start()
        self.accounts = AccountService(self.store, self.tokens, self.redis, self.keys)
        self.devices = DeviceService(self.store, self.presence, self.streams, self.delivery, self.recipients)
        self.notifications = NotificationService(
            self.store, self.streams, self.delivery, self.devices, self.recipients
        )
        self._loops = [
            asyncio.create_task(self._every(CURSOR_FLUSH_SECONDS, self.delivery.save_cursors)),
            asyncio.create_task(self._every(s.presence_ttl / 3, self.delivery.heartbeat)),
            asyncio.create_task(self._every(PURGE_SECONDS, self._purge)),
        ]

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        try:
            await self.delivery.save_cursors()
        except (RedisError, OSError) as exc:
            log.warning("could not save cursors on shutdown: %s", exc)
        await self.bus.stop()
        await self.redis.aclose(close_connection_pool=True)
        await self.store.close()
        if self.embedded is not None:
            await self.embedded.stop()

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
        except Exception as exc:  # any failure of the dependency means "down"
            log.warning("redis health check failed: %s", exc)
            redis_ok = False
        ok = store_ok and redis_ok
        return ok, {
            "status": "ok" if ok else "degraded",
            "websocket": {"status": "running", "connections": self.hub.count},
            "store": {"status": "ok" if store_ok else "down", "backend": self.store.backend},
            "redis": {"status": "ok" if redis_ok else "down", "embedded": self.embedded is not None},
        }

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except (RedisError, OSError) as exc:
                hooks.error(exc)
                log.warning("%s failed: %s", getattr(job, "__name__", job), exc)
            except Exception:  # a background loop must survive any one failure
                log.exception("%s failed", getattr(job, "__name__", job))

    async def _purge(self) -> None:
        removed = await self.store.purge_expired(utcnow())
        if removed:
            log.info("purged %d expired notifications", removed)
