"""GET /metrics during a real two-node workload: every family, with values the clients can check."""
from __future__ import annotations

import shutil
import urllib.error
import urllib.request

from tests.harness import WS, Node, RedisServer, call, new_user, short_tmpdir, ws_connect

POSTS = 12

FAMILIES = {
    "notisync_sockets_open": "gauge",
    "notisync_devices_online": "gauge",
    "notisync_notifications_ingested": "counter",
    "notisync_deliveries_written": "counter",
    "notisync_delivery_latency_seconds": "histogram",
    "notisync_stream_replays": "counter",
    "notisync_sync_required": "counter",
    "notisync_bus_messages": "counter",
    "notisync_redis_errors": "counter",
    "notisync_store_errors": "counter",
    "notisync_http_requests": "counter",
    "notisync_http_request_duration_seconds": "histogram",
    "notisync_event_loop_lag_seconds": "gauge",
    "notisync_event_loop_lag_observed_seconds": "histogram",
}


async def scrape(node: Node, token: str | None = None) -> dict[str, dict[tuple, float]]:
    """name -> {(sample name, sorted labels): value}"""
    from prometheus_client.parser import text_string_to_metric_families

    r = await call(node, "GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else None)
    assert r.status == 200, r.body
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {}
    for fam in text_string_to_metric_families(r.body):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
        families[fam.name] = {"type": fam.type, "samples": samples}
    return families


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float:
    key = (sample or family, tuple(sorted(labels.items())))
    return families[family]["samples"].get(key, 0.0)


async def settle(ws: WS) -> None:
    """A pong is written after every frame queued before it: once it is here, so is everything else."""
    await ws.send({"type": "ping", "id": "settle"})
    await ws.recv_type("ack")


async def test_metrics_during_a_two_node_workload(redis_server: RedisServer) -> None:
    data_dir = short_tmpdir()
    a = Node(data_dir=data_dir, redis_url=redis_server.url).start()
    b = Node(data_dir=data_dir, redis_url=redis_server.url).start()
    try:
        user = await new_user(a)
        phone, laptop, tablet = await user.device("mobile"), await user.device("desktop"), await user.device("web")
        # Receivers on b; the phone posts on a, so every delivery crosses the bus.
        receivers = [await ws_connect(b, user.token, laptop), await ws_connect(b, user.token, tablet)]
        for ws in receivers:
            await settle(ws)
        # A second laptop socket asking to resume from a position that never existed.
        stale = await ws_connect(b, user.token, laptop, last_id="nope")
        assert (await stale.recv_type("sync_required"))["data"]["reason"] == "unknown_last_id"
        receivers.append(stale)
        for ws in receivers:
            await settle(ws)

        for i in range(POSTS):
            await user.post(f"n{i}", device=phone, source_key=f"k{i}")
        await user.post("n0", device=phone, source_key="k0")  # a repeat: 200, nothing sent
        for ws in receivers:
            for _ in range(POSTS):
                await ws.recv_type("new_notification")
            await settle(ws)
        counted = sum(len(ws.frames) for ws in receivers)

        ma, mb = await scrape(a), await scrape(b)
        for families in (ma, mb):
            for name, kind in FAMILIES.items():
                assert name in families and families[name]["type"] == kind, name
        # Deliveries written on b are exactly the frames b's clients received.
        assert value(mb, "notisync_deliveries_written", "notisync_deliveries_written_total") == counted
        assert value(ma, "notisync_deliveries_written", "notisync_deliveries_written_total") == 0
        assert value(mb, "notisync_sockets_open") == 3 and value(mb, "notisync_devices_online") == 2
        assert value(ma, "notisync_sockets_open") == 0
        ingested = "notisync_notifications_ingested_total"
        assert value(ma, "notisync_notifications_ingested", ingested, outcome="stored") == POSTS
        assert value(ma, "notisync_notifications_ingested", ingested, outcome="duplicate") == 1
        assert value(ma, "notisync_notifications_ingested", ingested, outcome="dropped") == 0
        live = value(mb, "notisync_delivery_latency_seconds", "notisync_delivery_latency_seconds_count")
        assert 0 < live <= 3 * POSTS
        assert 0 <= value(mb, "notisync_delivery_latency_seconds", "notisync_delivery_latency_seconds_sum") < live * 5
        assert value(mb, "notisync_stream_replays", "notisync_stream_replays_total") >= 3  # one per connect
        assert value(mb, "notisync_sync_required", "notisync_sync_required_total", reason="unknown_last_id") == 1
        bus = "notisync_bus_messages_total"
        assert value(ma, "notisync_bus_messages", bus, direction="out") >= POSTS
        assert value(mb, "notisync_bus_messages", bus, direction="in") >= POSTS
        http = "notisync_http_requests_total"
        assert value(ma, "notisync_http_requests", http, route="/api/v1/notifications", method="POST",
                     status_class="2xx") == POSTS + 1
        assert value(mb, "notisync_http_requests", http, route="/ws", method="GET", status_class="1xx") == 3
        assert value(ma, "notisync_event_loop_lag_observed_seconds",
                     "notisync_event_loop_lag_observed_seconds_count") >= 1
        # No user, device or email in any label.
        for families in (ma, mb):
            for fam in families.values():
                for _, labels in fam["samples"]:
                    for _, label_value in labels:
                        assert not {user.id, user.email, phone, laptop, tablet} & {label_value}
                        assert "@" not in label_value

        # Redis goes away: the failed post is a 503 and is counted by kind.
        redis_server.stop()
        r = await call(a, "POST", "/api/v1/notifications", {"app_name": "x"}, token=user.token,
                       headers={"X-Device-ID": phone})
        assert r.status == 503, r.body
        errors = await scrape(a)
        assert sum(errors["notisync_redis_errors"]["samples"].values()) >= 1
        redis_server.start()
        for ws in receivers:
            ws.close()
    finally:
        for node in (a, b):
            assert node.stop() == 0, node.log()
        shutil.rmtree(data_dir, ignore_errors=True)


def _get(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        return urllib.request.urlopen(req, timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_metrics_token_and_metrics_off() -> None:
    guarded = Node(extra=["--metrics-token", "s3cret-scrape"]).start()
    off = Node(extra=["--metrics", "off"]).start()
    try:
        assert _get(guarded.base + "/metrics") == 401
        assert _get(guarded.base + "/metrics", "wrong") == 401
        assert _get(guarded.base + "/metrics", "s3cret-scrape") == 200
        assert _get(off.base + "/metrics") == 404
        assert _get(off.base + "/health") == 200
    finally:
        for node in (guarded, off):
            assert node.stop() == 0
            shutil.rmtree(node.data_dir, ignore_errors=True)
