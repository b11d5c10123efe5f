"""Prometheus metrics: the registry, the families, and the hooks that feed them.

The delivery path calls ``hooks.<event>(…)``, one call per event. Until
``enable`` runs (``--metrics off`` never runs it) every hook is a no-op
function, so a node without metrics pays one attribute lookup and one empty
call per event. Gauges that describe current state (sockets, devices) are
computed from the hub when Prometheus scrapes, not maintained per event.

No label carries a user id, device id or email: labels are routes
(templates), outcomes, reasons, error kinds, status classes — all bounded.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
    ProcessCollector, disable_created_metrics, generate_latest,
)
from prometheus_client import exposition
from prometheus_client.core import GaugeMetricFamily
from redis import exceptions as redis_errors

import notisync

OUTCOMES = ("stored", "duplicate", "rate_limited", "dropped")
SYNC_REASONS = ("unknown_last_id", "stream_reset", "history_trimmed")
LAG_INTERVAL = 0.5  # seconds between event-loop lag samples
# Live delivery is sub-millisecond to tens of ms; replays after an outage are seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The classic text format every Prometheus version reads (newer clients
# default to announcing 1.0.0; the bytes are the same for what we expose).
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", CONTENT_TYPE_LATEST)


def _noop(*_: Any) -> None:
    return None


class Hooks:
    """What the server reports. Every attribute is a plain function (no-op until enabled)."""

    def __init__(self) -> None:
        self.http_request: Callable[[str, str, int, float], None] = _noop
        self.ingested: Callable[[str], None] = _noop            # outcome
        self.frames_written: Callable[[int], None] = _noop      # frames handed to a socket
        self.live_write: Callable[[str], None] = _noop          # stream id of a live frame
        self.replay: Callable[[], None] = _noop                 # a socket (re)reads its stream
        self.sync_required: Callable[[str], None] = _noop       # reason
        self.bus_in: Callable[[], None] = _noop
        self.bus_out: Callable[..., None] = _noop         # optional count
        self.error: Callable[[BaseException], None] = _noop     # a Redis or store failure


hooks = Hooks()
registry: CollectorRegistry | None = None


def enable(hub: Any, node_id: str) -> CollectorRegistry:
    """Create the families, point the hooks at them, start the loop-lag probe.

    Call once per process, from inside the running event loop.
    """
    global registry
    disable_created_metrics()  # no *_created series: they double the output and nobody graphs them
    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    reg.register(_HubCollector(hub))
    info = Gauge("notisync_build_info", "Always 1; labels say which build runs.", ["version"], registry=reg)
    info.labels(notisync.__version__).set(1)
    Gauge("notisync_node_start_time_seconds", "Unix time this node started.", registry=reg).set(time.time())

    ingested = Counter("notisync_notifications_ingested_total",
                       "Notifications posted (REST or socket), by outcome.", ["outcome"], registry=reg)
    for outcome in OUTCOMES:
        ingested.labels(outcome)
    hooks.ingested = lambda outcome: ingested.labels(outcome).inc()

    written = Counter("notisync_deliveries_written_total",
                      "Frames written to WebSocket connections (every frame type).", registry=reg)
    hooks.frames_written = written.inc

    latency = Histogram(
        "notisync_delivery_latency_seconds",
        "Live deliveries: from the stream append (the Redis entry id's clock) to the loop turn "
        "that writes the frame to the socket.", buckets=LATENCY_BUCKETS, registry=reg)
    hooks.live_write = _latency_probe(latency, asyncio.get_running_loop())

    hooks.replay = Counter("notisync_stream_replays_total",
                           "Times a socket read its device's stream (connect, gap, resync).",
                           registry=reg).inc
    sync_required = Counter("notisync_sync_required_total", "sync_required frames sent, by reason.",
                            ["reason"], registry=reg)
    for reason in SYNC_REASONS:
        sync_required.labels(reason)
    hooks.sync_required = lambda reason: sync_required.labels(reason).inc()

    bus = Counter("notisync_bus_messages_total",
                  "Pub/sub messages between nodes: published by this node (out), handled from others (in).",
                  ["direction"], registry=reg)
    bus_in, bus_out = bus.labels("in"), bus.labels("out")
    hooks.bus_in = bus_in.inc
    hooks.bus_out = bus_out.inc  # bus_out(n) counts n publications (0 allowed)

    redis_err = Counter("notisync_redis_errors_total", "Failed Redis operations, by kind.", ["kind"], registry=reg)
    store_err = Counter("notisync_store_errors_total", "Failed document-store operations, by kind.",
                        ["kind"], registry=reg)
    hooks.error = _error_counter(redis_err, store_err)

    requests = Counter("notisync_http_requests_total", "HTTP requests, by route template, method and status class.",
                       ["route", "method", "status_class"], registry=reg)
    duration = Histogram("notisync_http_request_duration_seconds", "HTTP request duration, by route template.",
                         ["route"], buckets=HTTP_BUCKETS, registry=reg)

    def http_request(route: str, method: str, status: int, seconds: float) -> None:
        requests.labels(route, method, f"{status // 100}xx").inc()
        duration.labels(route).observe(seconds)

    hooks.http_request = http_request
    _start_lag_probe(reg)
    registry = reg
    return reg


def render() -> bytes:
    """The text exposition of this process's registry."""
    assert registry is not None, "metrics are not enabled"
    return generate_latest(registry)


class _HubCollector:
    """Sockets and devices on this node, counted from the hub at scrape time."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub

    def collect(self) -> Iterator[GaugeMetricFamily]:
        conns = list(self.hub.all())
        yield GaugeMetricFamily("notisync_sockets_open", "WebSocket connections open on this node.",
                                value=len(conns))
        yield GaugeMetricFamily("notisync_devices_online",
                                "Devices with at least one socket on this node.",
                                value=len({(c.user_id, c.device_id) for c in conns}))


def _latency_probe(histogram: Histogram, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
    """Hook for a live frame just queued: observed when the loop turn that writes it runs.

    A socket's queued frames are written by a callback scheduled this turn
    (handlers/outbox.py); ours is scheduled after it, so it runs once the
    write happened. The stream id ``<ms>-<seq>`` is the append time.
    """
    pending: list[str] = []

    def observe() -> None:
        now_ms = time.time() * 1000.0
        for stream_id in pending:
            histogram.observe(max(0.0, now_ms - int(stream_id[: stream_id.find("-")])) / 1000.0)
        pending.clear()

    def live_write(stream_id: str) -> None:
        if not pending:
            loop.call_soon(observe)
        pending.append(stream_id)

    return live_write


def _error_counter(redis_err: Counter, store_err: Counter) -> Callable[[BaseException], None]:
    def error(exc: BaseException) -> None:
        # Domain errors raised "from" a dependency failure carry it as the cause.
        for candidate in (exc, exc.__cause__):
            if candidate is None:
                continue
            kind = redis_kind(candidate)
            if kind is not None:
                redis_err.labels(kind).inc()
                return
            kind = store_kind(candidate)
            if kind is not None:
                store_err.labels(kind).inc()
                return

    return error


def redis_kind(exc: BaseException) -> str | None:
    if isinstance(exc, redis_errors.ResponseError):
        return "oom" if str(exc).startswith("OOM") else "response"
    if isinstance(exc, (redis_errors.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (redis_errors.ConnectionError, ConnectionError)):
        return "connection"
    if isinstance(exc, redis_errors.RedisError):
        return "other"
    return None


def store_kind(exc: BaseException) -> str | None:
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" if "locked" in str(exc) else "operational"
    if isinstance(exc, sqlite3.Error):
        return "database"
    try:
        from pymongo import errors as mongo
    except ImportError:  # pragma: no cover - pymongo comes with motor
        return None
    if isinstance(exc, (mongo.ServerSelectionTimeoutError, mongo.ExecutionTimeout, mongo.NetworkTimeout)):
        return "timeout"
    if isinstance(exc, mongo.ConnectionFailure):
        return "connection"
    if isinstance(exc, mongo.PyMongoError):
        return "other"
    return None


def _start_lag_probe(reg: CollectorRegistry) -> None:
    """A callback every LAG_INTERVAL; how late it runs is how long the loop was busy."""
    gauge = Gauge("notisync_event_loop_lag_seconds", "How late the latest lag probe ran.", registry=reg)
    histogram = Histogram("notisync_event_loop_lag_observed_seconds",
                          "How late each lag probe ran (one every 0.5 s).", buckets=LAG_BUCKETS, registry=reg)
    loop = asyncio.get_running_loop()

    def probe(expected: float) -> None:
        now = loop.time()
        lag = max(0.0, now - expected)
        gauge.set(lag)
        histogram.observe(lag)
        loop.call_at(now + LAG_INTERVAL, probe, now + LAG_INTERVAL)

    start = loop.time() + LAG_INTERVAL
    loop.call_at(start, probe, start)
