"""Node-to-node messages on a user's Redis channel: their kinds, encoding and decoding.

Every publication is ``<header JSON>\\n<body>`` (``store/bus.py``), the body an
already-encoded frame written to sockets untouched. The header names the
publishing node (``"n"``, added by the bus) and the kind (``"k"``):

- ``"m"`` NewEntries ``{"e": {device id: [previous id, new id]}}``, body = the
  frame: stream entries just appended. Built inside Redis by the fan-out
  script (``store/streams.py``), which is given the node id and writes
  exactly this shape, atomically with the appends; decoded here.
- ``"st"`` DeviceStatus ``{"d": device id}``, body = the ``device_status``
  frame for the user's other devices (live only, never queued).
- ``"dc"`` DeviceChanged ``{"d": device id}``, body = the ``device_changed``
  frame for all of the user's sockets (a device added, renamed or revoked;
  live only, never queued). A node that predates it ignores it.
- ``"rv"`` Revoked ``{"d": device id}``: close that device's sockets.
- ``"se"`` SessionEnded ``{"s": [session id, ...]}``: close the sockets opened
  with those sessions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

NEW_ENTRIES = "m"  # the fan-out script in store/streams.py writes this kind
DEVICE_STATUS = "st"
DEVICE_CHANGED = "dc"
REVOKED = "rv"
SESSION_ENDED = "se"


@dataclass(frozen=True, slots=True)
class NewEntries:
    entries: dict[str, tuple[str, str]]  # device id -> (previous id, new id)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    device_id: str


@dataclass(frozen=True, slots=True)
class Revoked:
    device_id: str


@dataclass(frozen=True, slots=True)
class SessionEnded:
    session_ids: tuple[str, ...]


Event = Union[NewEntries, DeviceStatus, DeviceChanged, Revoked, SessionEnded]


def encode(event: DeviceStatus | DeviceChanged | Revoked | SessionEnded) -> dict[str, Any]:
    """The header of an event published from Python (new entries come from the script)."""
    if isinstance(event, DeviceStatus):
        return {"k": DEVICE_STATUS, "d": event.device_id}
    if isinstance(event, DeviceChanged):
        return {"k": DEVICE_CHANGED, "d": event.device_id}
    if isinstance(event, SessionEnded):
        return {"k": SESSION_ENDED, "s": list(event.session_ids)}
    return {"k": REVOKED, "d": event.device_id}


def decode(header: dict[str, Any]) -> Event | None:
    """The typed event of a header; None for a kind this node does not know (a newer node's)."""
    kind = header.get("k")
    if kind == NEW_ENTRIES:
        return NewEntries({d: (p, i) for d, (p, i) in header["e"].items()})
    if kind == DEVICE_STATUS:
        return DeviceStatus(header["d"])
    if kind == DEVICE_CHANGED:
        return DeviceChanged(header["d"])
    if kind == REVOKED:
        return Revoked(header["d"])
    if kind == SESSION_ENDED:
        return SessionEnded(tuple(header["s"]))
    return None
