"""What every REST route shares: JSON errors for unknown routes and bodies, no 500 for
hostile input, CORS and allowed origins (REST and /ws), health and stats."""
from __future__ import annotations

import base64
import json
import shutil
import uuid
from typing import Any, Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from tests.harness import Node, Response, call, new_user, ws_connect
from tests.test_rest_auth import API, assert_error, parse_iso


# -- errors every route shares ------------------------------------------------------

async def test_unknown_route_and_wrong_method_answer_json(node):
    user = await new_user(node)
    assert_error(await call(node, "GET", "/no/such/route"), 404)
    assert_error(await call(node, "GET", f"{API}/nope", token=user.token), 404)
    assert_error(await call(node, "POST", f"{API}/devices/x/y/z", {}, token=user.token), 404)
    assert_error(await call(node, "DELETE", f"{API}/auth/login"), 405)
    assert_error(await call(node, "GET", f"{API}/auth/register"), 405)
    assert_error(await call(node, "POST", "/health", {}), 405)
    assert_error(await call(node, "PATCH", f"{API}/notifications", {}, token=user.token), 405)
    assert_error(await call(node, "DELETE", f"{API}/notifications", token=user.token), 405)


async def test_body_over_64k_is_413_with_content_length(node):
    user = await new_user(node)
    big = {"app_name": "Slack", "title": "x" * (65 * 1024)}
    assert_error(await user.call("POST", f"{API}/notifications", big), 413)
    assert_error(await call(node, "POST", f"{API}/auth/login", raw=b" " * (64 * 1024 + 1)), 413)
    # exactly at the limit is accepted as a body (and then judged on its content)
    at_limit = json.dumps({"app_name": "Slack", "body": ""}).encode()
    at_limit = at_limit[:-1] + b" " * (64 * 1024 - len(at_limit)) + b"}"
    assert len(at_limit) == 64 * 1024
    assert (await user.call("POST", f"{API}/notifications", raw=at_limit)).status == 201
    assert (await user.call("GET", f"{API}/notifications")).body["notifications"].__len__() == 1


async def chunked(node: Node, path: str, chunks: list[bytes], token: str | None = None) -> Response:
    async def produce(write: Any) -> None:
        for chunk in chunks:
            await write(chunk)

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = HTTPRequest(node.base + path, method="POST", headers=headers, body_producer=produce, request_timeout=30)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    assert "Content-Length" not in req.headers  # really sent chunked
    text = resp.body.decode() if resp.body else ""
    return Response(resp.code, json.loads(text) if text else None, resp.headers)


async def test_body_over_64k_is_413_when_chunked(node):
    user = await new_user(node)
    body = json.dumps({"app_name": "Slack", "title": "y" * (70 * 1024)}).encode()
    chunks = [body[i:i + 8192] for i in range(0, len(body), 8192)]
    assert_error(await chunked(node, f"{API}/notifications", chunks, user.token), 413)
    assert_error(await chunked(node, f"{API}/auth/login", [b"z" * 40000, b"z" * 40000]), 413)
    assert (await user.call("GET", f"{API}/notifications")).body["notifications"] == []
    # a small chunked body is read normally
    ok = json.dumps({"app_name": "Slack", "title": "chunked"}).encode()
    r = await chunked(node, f"{API}/notifications", [ok[:5], ok[5:]], user.token)
    assert r.status == 201 and r.body["title"] == "chunked"


def hostile_requests(device: str, notification: str) -> list[tuple[str, str, Any, bytes | None, dict[str, str]]]:
    """(method, path, json body, raw body, headers) — junk for every route."""
    junk_values = [None, 0, -1, 2**70, 1.5, True, "", "x" * 5000, [], [1, "a"], {}, {"nested": {"deep": [None]}},
                   "💥\u202e\u0000ζ", "\ud800", "' OR 1=1 --", "../../etc/passwd"]
    bodies: list[Any] = []
    for value in junk_values:
        bodies.append({k: value for k in ("email", "password", "refresh_token", "device_name", "device_type", "id",
                                          "push_token", "app_name", "title", "body", "category", "priority",
                                          "source_device_id", "source_key", "action", "device_id")})
    raws = [b"[]", b"null", b"\"str\"", b"{", b"\x00\x01\x02", b"[" * 3000 + b"]" * 3000,
            b'{"a":' * 3000 + b"1" + b"}" * 3000, b'{"app_name": "\\ud83d"}', b"1e99999", b"NaN"]
    bad_ids = ["not-a-uuid", "0", "%20", "..", "%FF", "%ED%A0%80", "a" * 3000, str(uuid.uuid4()), "null", "%00"]
    reqs: list[tuple[str, str, Any, bytes | None, dict[str, str]]] = []
    posts = [f"{API}/auth/register", f"{API}/auth/login", f"{API}/auth/refresh", f"{API}/devices",
             f"{API}/notifications"]
    puts = [f"{API}/devices/{device}", f"{API}/notifications/{notification}/action"]
    for path in posts:
        reqs += [("POST", path, b, None, {}) for b in bodies]
        reqs += [("POST", path, None, raw, {}) for raw in raws]
    for path in puts:
        reqs += [("PUT", path, b, None, {}) for b in bodies]
        reqs += [("PUT", path, None, raw, {}) for raw in raws]
    for bad in bad_ids:
        reqs += [("GET", f"{API}/devices/{bad}", None, None, {}), ("PUT", f"{API}/devices/{bad}", {"device_name": "n"}, None, {}),
                 ("DELETE", f"{API}/devices/{bad}", None, None, {}), ("GET", f"{API}/notifications/{bad}", None, None, {}),
                 ("PUT", f"{API}/notifications/{bad}/action", {"action": "read"}, None, {}),
                 ("POST", f"{API}/notifications", {"app_name": "x"}, None, {"X-Device-ID": bad}),
                 ("PUT", f"{API}/notifications/{notification}/action", {"action": "read"}, None, {"X-Device-ID": bad})]
    queries = ["limit=abc", "limit=0", "limit=201", "limit=-5", "limit=1e3", "limit=99999999999999999999999",
               "limit=", "is_read=maybe", "is_dismissed=2", "before=garbage", "before=%FF%FE", "before=" + "A" * 500,
               "before=" + base64.urlsafe_b64encode(b"0001-01-01T00:00:00+14:00|x").decode(),
               "before=" + base64.urlsafe_b64encode(b"2020-01-01T00:00:00|x").decode(),
               "before=" + base64.urlsafe_b64encode(b"|").decode(),
               "category=Spam", "category=", "q=", "q=" + "q" * 500, "q=%25%5F%5C", "q=%ED%A0%80", "app_name=%00",
               "limit=5&limit=abc", "unknown=1", "q=%F0%9F%92%A5"]
    reqs += [("GET", f"{API}/notifications?{q}", None, None, {}) for q in queries]
    return reqs


async def test_hostile_inputs_never_cause_a_500(node):
    user = await new_user(node)
    device = await user.device()
    notification = (await user.post("target", device=device))["id"]
    seen: dict[int, int] = {}
    for method, path, body, raw, headers in hostile_requests(device, notification):
        r = await call(node, method, path, body, token=user.token, headers=headers, raw=raw)
        where = (method, path[:80], json.dumps(body)[:80] if body is not None else raw[:30] if raw else None, headers)
        assert r.status < 500, (where, r.status, r.body)
        assert "Traceback" not in json.dumps(r.body), where
        seen[r.status] = seen.get(r.status, 0) + 1
        if r.status >= 400:
            try:
                assert_error(r, r.status)
            except AssertionError as exc:
                raise AssertionError(f"{where}: {exc}") from None
    # the table really reached validation, lookups and successes, not just one kind of refusal
    assert {400, 404} <= set(seen), seen
    # and the node is still healthy with this user's data intact
    assert (await call(node, "GET", "/health")).status == 200
    assert (await user.call("GET", f"{API}/notifications/{notification}")).status == 200


# -- CORS -------------------------------------------------------------------------

async def test_cors_preflight_and_simple_request_with_default_origins(node):
    origin = "https://somewhere.example"
    r = await call(node, "OPTIONS", f"{API}/notifications",
                   headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                            "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status == 204, (r.status, r.body)
    assert r.headers.get("Access-Control-Allow-Origin") == origin
    allowed = {h.strip().lower() for h in r.headers.get("Access-Control-Allow-Headers", "").split(",")}
    assert {"authorization", "content-type"} <= allowed
    methods = {m.strip() for m in r.headers.get("Access-Control-Allow-Methods", "").split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    # preflight on a route with an id, and on the auth routes
    for path in (f"{API}/devices/{uuid.uuid4()}", f"{API}/auth/login"):
        r = await call(node, "OPTIONS", path, headers={"Origin": origin, "Access-Control-Request-Method": "PUT"})
        assert r.status == 204 and r.headers.get("Access-Control-Allow-Origin") == origin, path
    user = await new_user(node)
    r = await user.call("GET", f"{API}/devices", headers={"Origin": origin})
    assert r.status == 200 and r.headers.get("Access-Control-Allow-Origin") == origin
    # error answers carry it too, or the browser app could not read them
    r = await call(node, "GET", f"{API}/devices", headers={"Origin": origin})
    assert r.status == 401 and r.headers.get("Access-Control-Allow-Origin") == origin
    r = await call(node, "GET", f"{API}/devices")
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.fixture(scope="module")
def narrow_node() -> Iterator[Node]:
    n = Node(extra=["--allowed-origins", "https://app.example"]).start()
    yield n
    code = n.stop()
    assert code == 0, n.log()
    shutil.rmtree(n.data_dir, ignore_errors=True)


async def test_allowed_origins_narrows_rest_and_websocket(narrow_node):
    n = narrow_node
    good, evil = "https://app.example", "https://evil.example"
    user = await new_user(n)
    device = await user.device()
    pre = {"Access-Control-Request-Method": "POST"}
    r = await call(n, "OPTIONS", f"{API}/devices", headers={"Origin": good, **pre})
    assert r.status == 204 and r.headers.get("Access-Control-Allow-Origin") == good
    assert "authorization" in r.headers.get("Access-Control-Allow-Headers", "").lower()
    r = await call(n, "OPTIONS", f"{API}/devices", headers={"Origin": evil, **pre})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Headers" not in r.headers
    r = await user.call("GET", f"{API}/devices", headers={"Origin": good})
    assert r.status == 200 and r.headers.get("Access-Control-Allow-Origin") == good
    r = await user.call("GET", f"{API}/devices", headers={"Origin": evil})
    assert "Access-Control-Allow-Origin" not in r.headers

    with pytest.raises(HTTPClientError) as refused:
        await ws_connect(n, user.token, device, headers={"Origin": evil})
    assert refused.value.code == 403
    ws = await ws_connect(n, user.token, device, headers={"Origin": good})
    try:
        await ws.send({"type": "ping"})
        assert (await ws.recv_type("pong"))["type"] == "pong"
    finally:
        ws.close()


async def test_websocket_accepts_any_origin_by_default(node):
    user = await new_user(node)
    ws = await ws_connect(node, user.token, await user.device(), headers={"Origin": "https://anything.example"})
    try:
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
    finally:
        ws.close()


# -- health and stats -------------------------------------------------------------

async def test_health_reports_ok_without_auth(node):
    r = await call(node, "GET", "/health")
    assert r.status == 200, r.body
    assert r.headers.get("Content-Type", "").startswith("application/json")
    b = r.body
    assert b["status"] == "ok"
    assert b["websocket"]["status"] == "running" and isinstance(b["websocket"]["connections"], int)
    assert b["store"] == {"status": "ok", "backend": "sqlite"}
    assert b["redis"]["status"] == "ok"


async def test_stats_need_auth_and_count_sockets(node):
    for path in (f"{API}/websocket/stats", f"{API}/websocket/users/stats"):
        assert_error(await call(node, "GET", path), 401)
    user = await new_user(node)
    r = await user.call("GET", f"{API}/websocket/users/stats")
    assert r.status == 200 and r.body["user_id"] == user.id and r.body["active_connections"] == 0
    parse_iso(r.body["timestamp"])
    ws = await ws_connect(node, user.token, await user.device())
    try:
        await ws.send({"type": "ping"})
        await ws.recv_type("pong")
        r = await user.call("GET", f"{API}/websocket/users/stats")
        assert r.body["active_connections"] == 1
        r = await user.call("GET", f"{API}/websocket/stats")
        assert r.status == 200 and r.body["total_connections"] >= 1
        parse_iso(r.body["timestamp"])
    finally:
        ws.close()
