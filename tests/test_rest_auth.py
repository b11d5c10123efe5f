"""Accounts and tokens over REST, plus what every route shares: the error
shape, body limits, CORS, /health and the stats routes. Real node, real sockets."""
from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.harness import Node, Response, call, new_user

API = "/api/v1"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


# -- shared checks (the other test_rest_* files import these) -----------------

def assert_error(r: Response, status: int, code: str | None = None, fields: set[str] | None = None) -> dict[str, Any]:
    """``r`` is exactly the SPEC error shape with that status; returns the error object."""
    assert r.status == status, (r.status, r.body)
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers.get("Content-Type")
    assert isinstance(r.body, dict) and set(r.body) == {"error"}, r.body
    err = r.body["error"]
    assert isinstance(err, dict) and {"code", "message"} <= set(err) <= {"code", "message", "fields"}, err
    assert isinstance(err["code"], str) and SNAKE.match(err["code"]), err
    assert isinstance(err["message"], str) and err["message"], err
    assert "Traceback" not in err["message"], err
    if "fields" in err:
        assert isinstance(err["fields"], dict) and err["fields"], err
        assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in err["fields"].items()), err
    if code is not None:
        assert err["code"] == code, err
    if fields is not None:
        assert set(err.get("fields", {})) == fields, err
    return err


def parse_iso(value: str) -> dt.datetime:
    assert isinstance(value, str) and ISO_Z.match(value), value
    return dt.datetime.fromisoformat(value[:-1] + "+00:00")


def fresh_email() -> str:
    return f"u{uuid.uuid4().hex[:12]}@example.com"


async def register(node: Node, email: str, password: str = "correct horse") -> Response:
    return await call(node, "POST", f"{API}/auth/register", {"email": email, "password": password})


async def login(node: Node, email: str, password: str = "correct horse") -> Response:
    return await call(node, "POST", f"{API}/auth/login", {"email": email, "password": password})


async def refresh(node: Node, token: str) -> Response:
    return await call(node, "POST", f"{API}/auth/refresh", {"refresh_token": token})


def read_secret(node: Node) -> str:
    with open(os.path.join(node.data_dir, "jwt_secret"), encoding="ascii") as f:
        return f.read().strip()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


# -- register -------------------------------------------------------------------

async def test_register_returns_the_user_with_lowercased_email(node):
    email = f"Mixed.{uuid.uuid4().hex[:8]}@Example.COM"
    before = dt.datetime.now(dt.timezone.utc)
    r = await register(node, email, "12345678")  # exactly 8 characters is enough
    assert r.status == 201, r.body
    assert set(r.body) == {"user"}
    user = r.body["user"]
    assert set(user) == {"id", "email", "created_at"}
    assert str(uuid.UUID(user["id"])) == user["id"]
    assert user["email"] == email.lower()
    created = parse_iso(user["created_at"])
    assert before - dt.timedelta(seconds=2) <= created <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    # the lower-cased address is the account: logging in with either spelling works
    r = await login(node, email.upper(), "12345678")
    assert r.status == 200 and r.body["user"] == user


async def test_register_twice_is_409_whatever_the_case(node):
    email = fresh_email()
    assert (await register(node, email)).status == 201
    assert_error(await register(node, email), 409)
    assert_error(await register(node, email.upper(), "another password"), 409)


@pytest.mark.parametrize("body, fields", [
    ({}, {"email", "password"}),
    ({"password": "long enough"}, {"email"}),
    ({"email": "not-an-email", "password": "long enough"}, {"email"}),
    ({"email": "a@example.com", "password": "short77"}, {"password"}),
    ({"email": "a@example.com", "password": 123}, {"password"}),
    ({"email": 5, "password": 12345678}, {"email", "password"}),
    ({"email": None, "password": None}, {"email", "password"}),
    ({"email": ["a@example.com"], "password": {"x": 1}}, {"email", "password"}),
], ids=["empty-object", "missing-email", "invalid-email", "short-password", "password-int",
        "both-wrong-type", "nulls", "list-and-object"])
async def test_register_reports_each_bad_field(node, body, fields):
    assert_error(await call(node, "POST", f"{API}/auth/register", body), 400, fields=fields)


@pytest.mark.parametrize("raw", [b"[]", b"null", b"42", b'"a@b.c"', b"{bad json", b"", b"\xff\xfe{}"],
                         ids=["array", "null", "number", "string", "malformed", "empty", "not-utf8"])
async def test_register_refuses_bodies_that_are_not_a_json_object(node, raw):
    r = await call(node, "POST", f"{API}/auth/register", raw=raw)
    assert_error(r, 400)


# -- login ----------------------------------------------------------------------

async def test_login_returns_a_bearer_pair_that_works(node):
    email = fresh_email()
    user = (await register(node, email)).body["user"]
    r = await login(node, email)
    assert r.status == 200, r.body
    assert set(r.body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert r.body["token_type"] == "Bearer" and r.body["expires_in"] == 900
    assert r.body["user"] == user
    assert r.body["access_token"] != r.body["refresh_token"]
    me = await call(node, "GET", f"{API}/websocket/users/stats", token=r.body["access_token"])
    assert me.status == 200 and me.body["user_id"] == user["id"]


async def test_wrong_password_and_unknown_email_look_the_same(node):
    email = fresh_email()
    await register(node, email)
    wrong = assert_error(await login(node, email, "not the password"), 401)
    unknown = assert_error(await login(node, fresh_email(), "not the password"), 401)
    assert wrong == unknown


async def test_sixth_login_attempt_in_a_minute_is_rate_limited(node):
    email, other = fresh_email(), fresh_email()
    await register(node, email)
    await register(node, other)
    for _ in range(5):
        assert_error(await login(node, email, "wrong password"), 401)
    # even the right password is refused now
    r = await login(node, email)
    assert_error(r, 429)
    retry = r.headers.get("Retry-After")
    assert retry is not None and retry.isdigit() and 0 < int(retry) <= 60, retry
    # the address is remembered lower-cased: changing the case does not reset the count
    assert_error(await login(node, email.upper()), 429)
    # another account from the same client is not affected
    assert (await login(node, other)).status == 200


# -- refresh --------------------------------------------------------------------

async def test_refresh_rotates_the_pair(node):
    user = await new_user(node)
    r = await refresh(node, user.refresh_token)
    assert r.status == 200, r.body
    assert r.body["token_type"] == "Bearer" and r.body["user"]["id"] == user.id
    assert r.body["refresh_token"] != user.refresh_token and r.body["access_token"] != user.token
    assert (await call(node, "GET", f"{API}/devices", token=r.body["access_token"])).status == 200
    # the used refresh token stops working
    assert_error(await refresh(node, user.refresh_token), 401)


async def test_reusing_a_refresh_token_revokes_the_newer_one_too(node):
    user = await new_user(node)
    newer = (await refresh(node, user.refresh_token)).body["refresh_token"]
    assert_error(await refresh(node, user.refresh_token), 401)  # the replay
    assert_error(await refresh(node, newer), 401)  # the whole family is gone
    # logging in again starts a fresh family
    again = await login(node, user.email, user.password)
    assert (await refresh(node, again.body["refresh_token"])).status == 200


async def test_tokens_only_work_in_their_own_role(node):
    user = await new_user(node)
    assert_error(await refresh(node, user.token), 401)  # access token as refresh
    assert_error(await call(node, "GET", f"{API}/devices", token=user.refresh_token), 401)  # and vice versa
    assert_error(await refresh(node, "not-a-token"), 401)
    assert_error(await call(node, "POST", f"{API}/auth/refresh", {}), 400, fields={"refresh_token"})


async def test_forged_tokens_are_refused(node):
    user = await new_user(node)
    secret = read_secret(node)
    now = int(time.time())
    sid = jwt.decode(user.token, options={"verify_signature": False})["sid"]  # a live session of the user
    claims = {"sub": user.id, "sid": sid, "type": "access", "iat": now, "exp": now + 600}
    # control: a token we sign with the node's secret is accepted, so the refusals below are about the token
    good = jwt.encode(claims, secret, algorithm="HS256")
    assert (await call(node, "GET", f"{API}/devices", token=good)).status == 200

    expired = jwt.encode({**claims, "iat": now - 1000, "exp": now - 60}, secret, algorithm="HS256")
    other_secret = jwt.encode(claims, "another-secret-of-the-same-length-" + secret[:16], algorithm="HS256")
    alg_none = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}."
    alg_none_signed = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}.{good.split('.')[2]}"
    no_type = jwt.encode({k: v for k, v in claims.items() if k != "type"}, secret, algorithm="HS256")
    no_session = jwt.encode({k: v for k, v in claims.items() if k != "sid"}, secret, algorithm="HS256")
    made_up_session = jwt.encode({**claims, "sid": "0" * 32}, secret, algorithm="HS256")
    for label, token in {"expired": expired, "other secret": other_secret, "alg none": alg_none,
                         "alg none with signature": alg_none_signed, "no type claim": no_type,
                         "no session": no_session, "a session that never was": made_up_session}.items():
        r = await call(node, "GET", f"{API}/devices", token=token)
        assert r.status == 401, (label, r.status, r.body)
        assert_error(r, 401)


def authenticated_routes(device_id: str, notification_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", f"{API}/devices", None),
        ("POST", f"{API}/devices", {"device_name": "x", "device_type": "web"}),
        ("GET", f"{API}/devices/{device_id}", None),
        ("PUT", f"{API}/devices/{device_id}", {"device_name": "renamed"}),
        ("DELETE", f"{API}/devices/{device_id}", None),
        ("GET", f"{API}/notifications", None),
        ("POST", f"{API}/notifications", {"app_name": "Slack"}),
        ("GET", f"{API}/notifications/{notification_id}", None),
        ("PUT", f"{API}/notifications/{notification_id}/action", {"action": "read"}),
        ("GET", f"{API}/websocket/stats", None),
        ("GET", f"{API}/websocket/users/stats", None),
    ]


async def test_every_authenticated_route_needs_a_valid_bearer_token(node):
    user = await new_user(node)
    device = await user.device()
    notification = (await user.post("secret"))["id"]
    bad_headers = {
        "none": {},
        "empty": {"Authorization": ""},
        "scheme only": {"Authorization": "Bearer"},
        "scheme and space": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer garbage"},
        "three dots": {"Authorization": "Bearer a.b.c"},
        "basic": {"Authorization": "Basic dXNlcjpwYXNz"},
        "token without scheme": {"Authorization": user.token},
    }
    for method, path, body in authenticated_routes(device, notification):
        for label, headers in bad_headers.items():
            r = await call(node, method, path, body, headers=headers)
            assert r.status == 401, (method, path, label, r.status, r.body)
            assert_error(r, 401)
    # nothing happened: the device is still there, unrenamed, the notification unread
    devices = (await user.call("GET", f"{API}/devices")).body["devices"]
    assert [(d["id"], d["device_name"]) for d in devices] == [(device, "web")]
    listed = (await user.call("GET", f"{API}/notifications")).body["notifications"]
    assert [(n["id"], n["is_read"]) for n in listed] == [(notification, False)]
