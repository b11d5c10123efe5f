"""JSON logs: every line parses, carries node and request ids, and leaks nothing secret."""
from __future__ import annotations

import json
import shutil

from tests.harness import Node, call, new_user, ws_connect

PASSWORD = "pw-Zq8vK2mLx9"
SEARCH = "srchTermQ7w"
TITLE = "ttlSecretP4"
BODY = "bodySecretR5 with words"


def _lines(node: Node) -> list[str]:
    with open(node.log_path, encoding="utf-8") as f:
        return [line for line in f.read().splitlines() if line.strip()]


async def test_json_logs_parse_and_hide_secrets() -> None:
    node = Node(extra=["--log-format", "json"]).start()
    try:
        user = await new_user(node, password=PASSWORD)
        phone = await user.device("mobile")
        laptop = await user.device("desktop")
        ws = await ws_connect(node, user.token, laptop)
        await user.post(TITLE, device=phone, body=BODY)
        frame = await ws.recv_type("new_notification")
        assert frame["data"]["body"] == BODY
        r = await user.call("GET", f"/api/v1/notifications?q={SEARCH}&limit=5")
        assert r.status == 200
        # A client-chosen request id comes back; a malformed one is replaced.
        r = await user.call("GET", "/api/v1/devices", headers={"X-Request-ID": "trace-42.a:b"})
        assert r.headers["X-Request-ID"] == "trace-42.a:b"
        r = await user.call("GET", "/api/v1/devices", headers={"X-Request-ID": "bad id\u00e9" * 3})
        assert r.headers["X-Request-ID"] != "bad id" and len(r.headers["X-Request-ID"]) == 32
        # Failing requests carrying secrets in the query and the body.
        r = await call(node, "GET", f"/api/v1/notifications?token={user.token}&q={SEARCH}")
        assert r.status == 401 and r.headers["X-Request-ID"]
        r = await call(node, "POST", "/api/v1/auth/login", {"email": user.email, "password": PASSWORD + "x"})
        assert r.status == 401
        r = await call(node, "POST", "/api/v1/auth/refresh", {"refresh_token": user.refresh_token})
        assert r.status == 200
        ws.close()
        await ws.wait_closed()
    finally:
        assert node.stop() == 0
    lines = _lines(node)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    secrets = [user.token, user.refresh_token, PASSWORD, SEARCH, TITLE, BODY, "bodySecretR5"]
    text = "\n".join(lines)
    for secret in secrets:
        assert secret not in text, f"{secret[:12]}… leaked into the log"
    for rec in records:
        assert {"time", "level", "logger", "message", "node_id", "request_id"} <= rec.keys()
        assert rec["time"].endswith("Z") and rec["node_id"]
    access = [r for r in records if r["logger"] == "tornado.access"]
    assert {"/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/notifications", "/ws"} <= {r["route"] for r in access}
    for rec in access:
        assert isinstance(rec["status"], int) and rec["duration_ms"] >= 0 and rec["request_id"]
    assert any(r["request_id"] == "trace-42.a:b" for r in access)
    assert any(r["route"] == "/api/v1/devices" and r["status"] == 201 for r in access)
    shutil.rmtree(node.data_dir, ignore_errors=True)


def _start_and_read(extra: list[str]) -> list[dict]:
    node = Node(extra=extra).start()
    assert node.stop() == 0
    records = [json.loads(line) for line in _lines(node)]
    shutil.rmtree(node.data_dir, ignore_errors=True)
    return records


def test_listening_beyond_loopback_warns_about_plain_http() -> None:
    records = _start_and_read(["--host", "0.0.0.0", "--log-format", "json"])
    warnings = [r for r in records if r["level"] == "WARNING" and "unencrypted" in r["message"]]
    assert len(warnings) == 1, records
    quiet = _start_and_read(["--host", "0.0.0.0", "--log-format", "json", "--behind-proxy"])
    assert not [r for r in quiet if "unencrypted" in r["message"]]
    local = _start_and_read(["--log-format", "json"])
    assert not [r for r in local if "unencrypted" in r["message"]]


def test_text_and_json_formatters_redact_what_slips_into_a_message() -> None:
    """The second line of defence: a message that quotes a URL, a header or a body is masked."""
    import logging

    from notisync.runtime.logs import ContextFilter, JsonFormatter, TextFormatter

    record = logging.LogRecord(
        "tornado.application", logging.ERROR, __file__, 1,
        'Uncaught exception GET /ws?token=%s&device_id=d1&q=%s (%s) {"password": "%s", "body": "%s"}',
        ("eyJtok.en", "private%20words", "Bearer abc.def", "hunter22", "the content"), None)
    ContextFilter("node1").filter(record)
    for formatter in (TextFormatter(), JsonFormatter()):
        line = formatter.format(record)
        for secret in ("eyJtok.en", "private", "words", "abc.def", "hunter22", "the content"):
            assert secret not in line, (type(formatter).__name__, line)
        assert "device_id=d1" in line  # everything else stays readable
