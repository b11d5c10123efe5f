"""Which devices a user's messages go to: cached per node, checked in Redis.

Listing a user's devices from the document store for every message was the
most expensive step of a fan-out. Instead each node keeps the live device
ids per user together with the user's device-list *version*, a Redis
counter that device creation and revocation bump (after the database
write). The fan-out script appends only if the version is still the one the
list was read at; otherwise the list is reloaded and the fan-out retried.

Reloading reads the version *before* the list: a change in between leaves
an entry whose list is newer than its version, which only costs one more
reload, never a wrong delivery.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from store.documents import DocumentStore
from store.streams import Streams

log = logging.getLogger(__name__)

CACHE_USERS = 10_000
# A safety net, not the mechanism: should Redis ever lose a bump but keep
# its epoch (e.g. the last second of an fsync-everysec AOF), a stale list
# is reloaded once it is this old (in the background: the fan-out script
# vouches for the list in use meanwhile, as for any cached list).
MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True)
class DeviceList:
    epoch: str  # the user's stream epoch, read with the version: the fan-out script checks both
    version: int
    devices: tuple[str, ...]
    loaded_at: float
    types: dict[str, str] = field(default_factory=dict)  # device id -> mobile|web|desktop
    # device id -> the core's compiled preferences (only devices that have any).
    # Preference changes bump the same version, so these are as fresh as the list.
    policies: dict[str, Any] = field(default_factory=dict)


# Stored preferences by device -> what the core wants kept per device (set by the runtime).
PolicyCompiler = Callable[[dict[str, dict[str, Any]]], dict[str, Any]]


class Recipients:
    def __init__(
        self, store: DocumentStore, streams: Streams, size: int = CACHE_USERS, policies: PolicyCompiler | None = None,
    ) -> None:
        self.store = store
        self.compile_policies = policies
        self.streams = streams
        self.size = size
        self._lists: OrderedDict[str, DeviceList] = OrderedDict()
        self._reloads: dict[str, asyncio.Task[None]] = {}

    async def get(self, user_id: str) -> DeviceList:
        """The cached list (possibly stale: the fan-out script checks it), or a fresh one."""
        entry = self._lists.get(user_id)
        if entry is None:
            return await self.load(user_id)
        if time.monotonic() - entry.loaded_at > MAX_AGE_SECONDS and user_id not in self._reloads:
            # Not awaited: a user posting every few minutes would otherwise
            # pay a store read and a Redis round trip on almost every post.
            task = self._reloads[user_id] = asyncio.ensure_future(self._reload(user_id))
            task.add_done_callback(lambda _: self._reloads.pop(user_id, None))
        self._lists.move_to_end(user_id)
        return entry

    async def _reload(self, user_id: str) -> None:
        try:
            await self.load(user_id)
        except Exception as exc:  # Redis or the store away: the next post past the age tries again
            log.debug("reloading the device list of %s failed: %r", user_id, exc)

    async def load(self, user_id: str) -> DeviceList:
        """Read the epoch and version, then the list, and cache them."""
        epoch, version = await self.streams.user_state(user_id)
        rows = await self.store.list_devices(user_id)
        devices = tuple(d["id"] for d in rows)
        policies: dict[str, Any] = {}
        if self.compile_policies is not None:
            policies = self.compile_policies(await self.store.get_preferences(user_id))
        types = {d["id"]: d["device_type"] for d in rows}
        entry = DeviceList(epoch, version, devices, time.monotonic(), types, policies)
        self._lists[user_id] = entry
        self._lists.move_to_end(user_id)
        while len(self._lists) > self.size:
            self._lists.popitem(last=False)
        return entry

    def forget(self, user_id: str) -> None:
        self._lists.pop(user_id, None)

    def clear(self) -> None:
        """Redis lost data (a new epoch) or was away: versions may restart, so no entry can be trusted."""
        self._lists.clear()
