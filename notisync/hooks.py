"""What the server reports as it works: one plain callable per event, no-ops until metrics are on.

The use cases, the delivery engine and the handlers call ``hooks.<event>(…)``;
``notisync/runtime/metrics.py`` points them at its figures when metrics are
enabled (``--metrics on``, the default). Kept at the package root, free of
dependencies, so every floor can report without importing the runtime.
"""
from __future__ import annotations

from typing import Any, Callable


def _noop(*_: Any) -> None:
    return None


class Hooks:
    """What the server reports. Every attribute is a plain callable (no-op until enabled)."""

    def __init__(self) -> None:
        self.http_request: Callable[[str, str, int, float], None] = _noop
        self.ingested: Callable[[str], None] = _noop            # outcome
        self.frames_written: Callable[[int], None] = _noop      # frames handed to a socket
        self.live_write: Callable[[str], None] = _noop          # stream id of a live frame
        self.replay: Callable[[], None] = _noop                 # a socket (re)reads its stream
        self.sync_required: Callable[[str], None] = _noop       # reason
        self.bus_in: Callable[[], None] = _noop
        self.bus_out: Callable[..., None] = _noop               # optional count
        self.error: Callable[[BaseException], None] = _noop     # a Redis or store failure


hooks = Hooks()
