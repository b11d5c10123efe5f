"""Prometheus metrics: the figures, the hooks that feed them, the registry that exposes them.

The delivery path calls ``hooks.<event>(…)``, one call per event. Until
``enable`` runs (``--metrics off`` never runs it) every hook is a no-op.
Once enabled, a hook adds to plain Python ints: every hook runs on the
event loop's thread, and so does the scrape, so no lock is needed (the
client library's own Counter/Histogram take a lock per increment, which
measured ~5 µs per delivery, 20 % of a delivery's CPU at saturation; see
README "Operations"). prometheus_client builds the families from these
figures at scrape time (custom collectors) and writes the text format.

Gauges that describe current state (sockets, devices) are counted from
the hub when Prometheus scrapes. No label carries a user id, device id or
email: labels are route templates, outcomes, reasons, error kinds and
status classes, all bounded.
"""
from __future__ import annotations

import asyncio
import bisect
import sqlite3
import time
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, exposition, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from redis import exceptions as redis_errors

import notisync
from notisync.hooks import hooks

OUTCOMES = ("stored", "duplicate", "updated", "rate_limited", "dropped")
SYNC_REASONS = ("unknown_last_id", "stream_reset", "history_trimmed")
LAG_INTERVAL = 0.5  # seconds between event-loop lag samples
# Live delivery is sub-millisecond to tens of ms; replays after an outage are seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The classic text format every Prometheus version reads (newer clients
# default to announcing 1.0.0; the bytes are the same for what we expose).
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)


registry: CollectorRegistry | None = None


class FastHistogram:
    """Bucket counts in plain ints; cumulative only when scraped."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, int]]:
        out, total = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts):
            total += count
            out.append((bound, total))
        return out


class Figures:
    """Every figure the hooks feed, as plain numbers (event-loop thread only)."""

    def __init__(self) -> None:
        self.ingested = dict.fromkeys(OUTCOMES, 0)
        self.frames = 0
        self.latency = FastHistogram(LATENCY_BUCKETS)
        self.replays = 0
        self.sync_required = dict.fromkeys(SYNC_REASONS, 0)
        self.bus_in = 0
        self.bus_out = 0
        self.redis_errors: dict[str, int] = {}
        self.store_errors: dict[str, int] = {}
        self.http: dict[tuple[str, str, str], int] = {}
        self.http_seconds: dict[str, FastHistogram] = {}
        self.lag = 0.0
        self.lag_seconds = FastHistogram(LAG_BUCKETS)
        self._pending: list[str] = []

    # -- hooks ----------------------------------------------------------------
    def on_ingested(self, outcome: str) -> None:
        self.ingested[outcome] = self.ingested.get(outcome, 0) + 1

    def on_frames(self, count: int) -> None:
        self.frames += count

    def on_replay(self) -> None:
        self.replays += 1

    def on_sync_required(self, reason: str) -> None:
        self.sync_required[reason] = self.sync_required.get(reason, 0) + 1

    def on_bus_in(self) -> None:
        self.bus_in += 1

    def on_bus_out(self, count: int = 1) -> None:
        self.bus_out += count

    def on_http(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, f"{status // 100}xx")
        self.http[key] = self.http.get(key, 0) + 1
        histogram = self.http_seconds.get(route)
        if histogram is None:
            histogram = self.http_seconds[route] = FastHistogram(HTTP_BUCKETS)
        histogram.observe(seconds)

    def on_error(self, exc: BaseException) -> None:
        # Domain errors raised "from" a dependency failure carry it as the cause.
        for candidate in (exc, exc.__cause__):
            if candidate is None:
                continue
            kind = redis_kind(candidate)
            if kind is not None:
                self.redis_errors[kind] = self.redis_errors.get(kind, 0) + 1
                return
            kind = store_kind(candidate)
            if kind is not None:
                self.store_errors[kind] = self.store_errors.get(kind, 0) + 1
                return

    def live_writer(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
        """Hook for a live frame just queued: observed when the loop turn that writes it runs.

        A socket's queued frames are written by a callback scheduled this
        turn (handlers/outbox.py); ours is scheduled after it, so it runs
        once the write happened. The stream id ``<ms>-<seq>`` is the append
        time on Redis's clock.
        """
        pending = self._pending
        latency = self.latency

        def observe() -> None:
            now_ms = time.time() * 1000.0
            for stream_id in pending:
                latency.observe(max(0.0, now_ms - int(stream_id[: stream_id.find("-")])) / 1000.0)
            pending.clear()

        def live_write(stream_id: str) -> None:
            if not pending:
                loop.call_soon(observe)
            pending.append(stream_id)

        return live_write


def enable(hub: Any, node_id: str) -> CollectorRegistry:
    """Point the hooks at fresh figures, start the loop-lag probe, build the registry.

    Call once per process, from inside the running event loop.
    """
    global registry
    loop = asyncio.get_running_loop()
    figures = Figures()
    hooks.ingested = figures.on_ingested
    hooks.frames_written = figures.on_frames
    hooks.live_write = figures.live_writer(loop)
    hooks.replay = figures.on_replay
    hooks.sync_required = figures.on_sync_required
    hooks.bus_in = figures.on_bus_in
    hooks.bus_out = figures.on_bus_out
    hooks.error = figures.on_error
    hooks.http_request = figures.on_http
    _start_lag_probe(figures, loop)
    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    reg.register(_Collector(figures, hub, time.time()))
    registry = reg
    return reg


def render() -> bytes:
    """The text exposition of this process's registry."""
    assert registry is not None, "metrics are not enabled"
    return generate_latest(registry)


class _Collector:
    """Turns the figures (and the hub's current state) into metric families at scrape time."""

    def __init__(self, figures: Figures, hub: Any, started: float) -> None:
        self.f = figures
        self.hub = hub
        self.started = started

    def collect(self) -> Iterator[Any]:
        f = self.f
        conns = list(self.hub.all())
        yield _gauge("notisync_sockets_open", "WebSocket connections open on this node.", len(conns))
        yield _gauge("notisync_devices_online", "Devices with at least one socket on this node.",
                     len({(c.user_id, c.device_id) for c in conns}))
        info = GaugeMetricFamily("notisync_build_info", "Always 1; the label says which build runs.",
                                 labels=["version"])
        info.add_metric([notisync.__version__], 1)
        yield info
        yield _gauge("notisync_node_start_time_seconds", "Unix time this node started.", self.started)
        yield _counter("notisync_notifications_ingested", "Notifications posted (REST or socket), by outcome.",
                       "outcome", f.ingested)
        yield _counter("notisync_deliveries_written", "Frames written to WebSocket connections (every frame type).",
                       None, f.frames)
        yield _histogram("notisync_delivery_latency_seconds",
                         "Live deliveries: from the stream append (the Redis entry id's clock) to the loop turn "
                         "that writes the frame to the socket.", f.latency)
        yield _counter("notisync_stream_replays", "Times a socket read its device's stream (connect, gap, resync).",
                       None, f.replays)
        yield _counter("notisync_sync_required", "sync_required frames sent, by reason.", "reason", f.sync_required)
        yield _counter("notisync_bus_messages",
                       "Pub/sub messages between nodes: published by this node (out), handled from others (in).",
                       "direction", {"in": f.bus_in, "out": f.bus_out})
        yield _counter("notisync_redis_errors", "Failed Redis operations, by kind.", "kind", f.redis_errors)
        yield _counter("notisync_store_errors", "Failed document-store operations, by kind.", "kind", f.store_errors)
        requests = CounterMetricFamily("notisync_http_requests",
                                       "HTTP requests, by route template, method and status class.",
                                       labels=["route", "method", "status_class"])
        for labels, count in list(f.http.items()):
            requests.add_metric(list(labels), count)
        yield requests
        seconds = HistogramMetricFamily("notisync_http_request_duration_seconds",
                                        "HTTP request duration, by route template.", labels=["route"])
        for route, histogram in list(f.http_seconds.items()):
            seconds.add_metric([route], histogram.buckets(), histogram.sum)
        yield seconds
        yield _gauge("notisync_event_loop_lag_seconds", "How late the latest lag probe ran.", f.lag)
        yield _histogram("notisync_event_loop_lag_observed_seconds",
                         f"How late each lag probe ran (one every {LAG_INTERVAL:g} s).", f.lag_seconds)


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def _counter(name: str, text: str, label: str | None, values: Any) -> CounterMetricFamily:
    if label is None:
        return CounterMetricFamily(name, text, value=values)
    family = CounterMetricFamily(name, text, labels=[label])
    for key, count in list(values.items()):
        family.add_metric([key], count)
    return family


def _histogram(name: str, text: str, histogram: FastHistogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, text, buckets=histogram.buckets(), sum_value=histogram.sum)


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


def _start_lag_probe(figures: Figures, loop: asyncio.AbstractEventLoop) -> None:
    """A callback every LAG_INTERVAL; how late it runs is how long the loop was busy."""

    def probe(expected: float) -> None:
        now = loop.time()
        figures.lag = max(0.0, now - expected)
        figures.lag_seconds.observe(figures.lag)
        loop.call_at(now + LAG_INTERVAL, probe, now + LAG_INTERVAL)

    start = loop.time() + LAG_INTERVAL
    loop.call_at(start, probe, start)
