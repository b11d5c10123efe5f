"""Fan-out: one encoded frame appended to every recipient device's stream, then local sockets woken.

The append is one Lua script (``store/streams.py``) that also publishes the
wake-up other nodes deliver from; this node delivers to its own sockets
straight from the script's reply. Recipients come from the per-node
device-list cache (``recipients.py``), checked by version inside the script.
"""
from __future__ import annotations

from typing import Any, Callable

from redis.exceptions import RedisError

from notisync import protocol
from notisync.delivery.recipients import DeviceList, Recipients
from notisync.delivery.replay import Delivery
from notisync.errors import NotFound, Unavailable
from notisync.hooks import hooks
from store.streams import EpochMismatch, StaleDevices, Streams

# Device lists that change under a fan-out this often in a row mean churn
# far beyond any real user; the caller gets a 503 and retries.
FANOUT_TRIES = 5

# Given the (version-checked) device list and the devices a message would
# reach, which of them get it and which of those get it silently: how the
# core applies rules' routing and each device's preferences at fan-out time.
Shape = Callable[[DeviceList, list[str]], tuple[list[str], frozenset[str]]]
# The devices an attempt appends to, those of them that get the silent body, and that body.
Pick = tuple[list[str], frozenset[str], "bytes | None"]


class _TargetGone(Exception):
    """send_to's single target is not (or no longer) a live device of the user."""


class FanOut:
    def __init__(self, streams: Streams, recipients: Recipients, delivery: Delivery, node_id: str) -> None:
        self.streams = streams
        self.recipients = recipients
        self.delivery = delivery
        self.node_id = node_id

    async def send(
        self, user_id: str, source: str | None, kind: str, data: dict[str, Any],
        targets: DeviceList | None = None, once_for: str | None = None, sender_must_be_live: bool = True,
        shape: Shape | None = None, silent_data: dict[str, Any] | None = None,
    ) -> None:
        """Append one frame to every device of the user but ``source``, then wake sockets.

        ``targets`` is the cached device list; if Redis says it is stale, it
        is reloaded and the append retried. 404 if ``source`` turns out not
        to be a live device of the user (unless ``sender_must_be_live`` is
        False): nothing has been sent then. With ``once_for`` (a stored
        notification's id) only the first call for that id appends.
        ``shape`` picks recipients and the ones that get ``silent_data``
        instead of ``data``; it is applied to the very list whose version
        the append checks, so a preference change is never half-applied.
        """
        # Encoded only if some device gets it: most notifications reach no
        # muted device, and then neither the encoding nor its bytes in the
        # script call (where an empty silent body means "none") are needed.
        silent_body: list[bytes] = []

        def pick(entry: DeviceList, reloaded: bool) -> Pick:
            if reloaded and sender_must_be_live and source is not None and source not in entry.devices:
                raise NotFound("device not found", code="device_not_found")
            devices = [d for d in entry.devices if d != source]
            silent: frozenset[str] = frozenset()
            if shape is not None:
                devices, silent = shape(entry, devices)
            if silent and not silent_body and silent_data is not None:
                silent_body.append(protocol.frame(kind, silent_data))
            return devices, silent, silent_body[0] if silent_body else None

        entry = targets or await self.device_list(user_id, source if sender_must_be_live else None)
        await self._append(user_id, entry, pick, protocol.frame(kind, data), once_for)

    async def send_to(self, user_id: str, source: str | None, target: str, kind: str, data: dict[str, Any]) -> bool:
        """Append one frame to a single device's stream (``action_invoked`` to a
        notification's source device), then wake its sockets.

        Same script, same guarantees as ``send``; False (nothing sent) if
        ``target`` is no longer a live device of the user.
        """
        def pick(entry: DeviceList, reloaded: bool) -> Pick:
            if target not in entry.devices or target == source:
                raise _TargetGone()
            return [target], frozenset(), None

        entry = await self.recipients.get(user_id)
        if target not in entry.devices:
            entry = await self.recipients.load(user_id)  # created after we cached the list?
        try:
            await self._append(user_id, entry, pick, protocol.frame(kind, data), None)
        except _TargetGone:
            return False
        return True

    async def _append(
        self, user_id: str, entry: DeviceList, pick: Callable[[DeviceList, bool], Pick], body: bytes,
        once_for: str | None,
    ) -> None:
        """The append, retried on a stale device list or a new epoch; then this node's sockets are woken."""
        for attempt in range(FANOUT_TRIES):
            devices, silent, silent_body = pick(entry, attempt > 0)
            try:
                appended = await self.streams.append(
                    entry.epoch, user_id, entry.version, devices, self.node_id, body, once_for, silent_body, silent,
                )
            except EpochMismatch:
                await self.delivery.resync_all()  # also empties the device-list cache
            except StaleDevices:
                pass
            except (RedisError, OSError):
                # No reply: the script may have run, or may still run later.
                # Its wake-up (published only when another node holds a socket
                # of the user) is then the only one this node's sockets get,
                # and the streams are re-read now and on the next attempt.
                self.delivery.expect_own_echo(user_id)
                self.delivery.catch_up(user_id)
                raise
            else:
                if appended is None:
                    # An earlier attempt appended it (a retry, the sweeper): if
                    # its reply was lost, this node's sockets never had it.
                    self.delivery.catch_up(user_id)
                    return
                hooks.bus_out(1 if appended.published else 0)
                if silent and silent_body is not None:
                    quiet = {d: ids for d, ids in appended.items() if d in silent}
                    self.delivery.deliver(user_id, quiet, silent_body)
                    self.delivery.deliver(user_id, {d: ids for d, ids in appended.items() if d not in silent}, body)
                else:
                    self.delivery.deliver(user_id, appended, body)
                return
            entry = await self.recipients.load(user_id)
        raise Unavailable("the device list keeps changing; retry", code="devices_changing")

    async def cancel(self, user_id: str, notification_id: str) -> bool:
        """Make sure no attempt ever appends this notification; False if one already did."""
        return await self.streams.cancel_once(user_id, notification_id)

    async def device_list(self, user_id: str, source: str | None) -> DeviceList:
        """The user's device list, which must hold ``source`` if given (404 if it cannot)."""
        entry = await self.recipients.get(user_id)
        if source is not None and source not in entry.devices:
            entry = await self.recipients.load(user_id)  # created after we cached the list?
            if source not in entry.devices:
                raise NotFound("device not found", code="device_not_found")
        return entry
