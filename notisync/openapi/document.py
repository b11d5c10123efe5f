"""Build the OpenAPI 3.1 document with apispec and its marshmallow plugin.

One table, ``OPERATIONS``, lists every route the application serves (path
templates as the access log and the metrics name them) with its request
schema (the very schema the handler validates with), its answers, and
whether it needs the bearer token. tests/test_ops_openapi.py checks the
table against the application's route list, so a new route without an
entry fails the suite.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import Schema

import notisync
from notisync import schemas
from notisync.openapi import responses as out

JSON = "application/json"
BEARER = "bearerAuth"

# Every error answer has the same shape (SPEC "Conventions").
ERROR_TEXT = {
    400: "Invalid input (body, query or JSON)",
    401: "Missing, invalid or expired token",
    403: "Not allowed",
    404: "Not found (also for another user's ids)",
    409: "Conflict",
    413: "Body larger than 64 KiB",
    429: "Rate limited; see Retry-After",
    503: "A dependency (Redis or the document store) is down; retry",
}


@dataclass
class Op:
    summary: str
    ok: dict[int, tuple[str, type[Schema] | None]]  # status -> (description, schema)
    errors: tuple[int, ...] = ()
    body: Schema | None = None
    query: Schema | None = None
    auth: bool = True
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


_AUTHED = (401, 503)
_BODY = (400, 413)

OPERATIONS: dict[str, dict[str, Op]] = {
    "/api/v1/auth/register": {
        "post": Op("Create an account", {201: ("Account created", out.UserEnvelopeSchema)},
                   _BODY + (409, 429, 503), body=schemas.REGISTER, auth=False, tags=("auth",)),
    },
    "/api/v1/auth/login": {
        "post": Op("Sign in: an access and a refresh token", {200: ("Signed in", out.TokenPairSchema)},
                   _BODY + (401, 404, 429, 503), body=schemas.LOGIN, auth=False, tags=("auth",)),
    },
    "/api/v1/auth/refresh": {
        "post": Op("Trade a refresh token for a new pair (the old one stops working)",
                   {200: ("New pair", out.TokenPairSchema)}, _BODY + (401, 503),
                   body=schemas.REFRESH, auth=False, tags=("auth",)),
    },
    "/api/v1/auth/logout": {
        "post": Op("End the caller's session (tokens refused and sockets closed on every node)",
                   {204: ("Ended", None)}, _AUTHED, tags=("auth",)),
    },
    "/api/v1/auth/logout-all": {
        "post": Op("End every session of the caller's account", {204: ("Ended", None)}, _AUTHED, tags=("auth",)),
    },
    "/api/v1/auth/password": {
        "post": Op("Change the password; every other session ends", {204: ("Changed", None)},
                   _BODY + _AUTHED + (403,), body=schemas.PASSWORD_CHANGE, tags=("auth",)),
    },
    "/api/v1/auth/ws-ticket": {
        "post": Op("A single-use ticket for /ws?ticket=, valid 30 s", {201: ("Ticket", out.TicketSchema)},
                   _AUTHED, tags=("auth",)),
    },
    "/api/v1/account": {
        "delete": Op("Delete the account with its devices, notifications, queues and sessions",
                     {204: ("Deleted", None)}, _BODY + _AUTHED + (403,), body=schemas.ACCOUNT_DELETE,
                     tags=("auth",)),
    },
    "/api/v1/devices": {
        "get": Op("List devices with presence", {200: ("Devices", out.DeviceListSchema)}, _AUTHED,
                  tags=("devices",)),
        "post": Op("Register a device (idempotent with a client-chosen id), with a session bound to it",
                   {201: ("Device created", out.DeviceCreatedSchema),
                    200: ("Existing device (repeat)", out.DeviceCreatedSchema)},
                   _BODY + _AUTHED + (404, 409), body=schemas.DEVICE_CREATE, tags=("devices",)),
    },
    "/api/v1/devices/{device_id}": {
        "get": Op("One device", {200: ("Device", out.DeviceSchema)}, _AUTHED + (404,), tags=("devices",)),
        "put": Op("Rename a device or set its push token", {200: ("Device", out.DeviceSchema)},
                  _BODY + _AUTHED + (404,), body=schemas.DEVICE_UPDATE, tags=("devices",)),
        "delete": Op("Revoke a device: its sockets close with 1008, its id is refused from then on",
                     {204: ("Revoked", None)}, _AUTHED + (404,), tags=("devices",)),
    },
    "/api/v1/notifications": {
        "post": Op("Post a notification; the user's other devices receive it",
                   {201: ("Stored and sent", out.NotificationSchema),
                    200: ("Repeat of a source_key: unchanged content sends nothing; new content (title, body,"
                          " category, priority, actions) updates it in place and the other devices receive"
                          " notification_updated", out.NotificationSchema)},
                   _BODY + _AUTHED + (403, 404, 429), body=schemas.NOTIFICATION_CREATE, tags=("notifications",),
                   extra={"parameters": [{"in": "header", "name": "X-Device-ID", "required": False,
                                          "schema": {"type": "string"},
                                          "description": "the posting device (instead of source_device_id)"}]}),
        "get": Op("List notifications, newest first", {200: ("A page", out.NotificationPageSchema)},
                  (400,) + _AUTHED, query=schemas.NOTIFICATION_LIST, tags=("notifications",)),
    },
    "/api/v1/notifications/{notification_id}": {
        "get": Op("One notification", {200: ("Notification", out.NotificationSchema)}, _AUTHED + (404,),
                  tags=("notifications",)),
    },
    "/api/v1/notifications/{notification_id}/action": {
        "put": Op("Mark read, dismissed or clicked; other devices receive notification_sync",
                  {200: ("Notification", out.NotificationSchema)}, _BODY + _AUTHED + (403, 404),
                  body=schemas.ACTION, tags=("notifications",)),
    },
    "/api/v1/notifications/{notification_id}/invoke": {
        "post": Op("Invoke one of the notification's actions (button or reply); its source device receives"
                   " action_invoked on its stream", {202: ("Queued for the source device", out.InvokedSchema)},
                   _BODY + _AUTHED + (403, 404, 409), body=schemas.INVOKE, tags=("notifications",)),
    },
    "/api/v1/websocket/stats": {
        "get": Op("Sockets on this node", {200: ("Counts", out.NodeStatsSchema)}, _AUTHED, tags=("stats",)),
    },
    "/api/v1/websocket/users/stats": {
        "get": Op("The caller's sockets on every node", {200: ("Counts", out.UserStatsSchema)}, _AUTHED,
                  tags=("stats",)),
    },
    "/health": {
        "get": Op("Health of the node and its dependencies",
                  {200: ("Healthy", out.HealthSchema), 503: ("Degraded", out.HealthSchema)},
                  auth=False, tags=("operations",)),
    },
    "/api/v1/openapi.json": {
        "get": Op("This document", {200: ("OpenAPI 3.1", None)}, auth=False, tags=("operations",),
                  extra={"responses": {"200": {"description": "OpenAPI 3.1",
                                               "content": {JSON: {"schema": {"type": "object"}}}}}}),
    },
}

# Routes that exist only with some settings.
METRICS_OP = {
    "/metrics": {
        "get": Op("Prometheus metrics (text format); needs the --metrics-token bearer when one is set",
                  {}, (401,), auth=False, tags=("operations",),
                  extra={"responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                                               "content": {"text/plain": {"schema": {"type": "string"}}}}}}),
    },
}

# Not JSON APIs, but served by the same application: described so the
# document covers every route.
WEB_OPS = {
    "/ws": {
        "get": Op("WebSocket endpoint (see the README for the protocol). A plain GET is refused.",
                  {}, (400, 403), auth=False, tags=("websocket",),
                  extra={"parameters": [
                      {"in": "query", "name": name, "required": False, "schema": {"type": "string"},
                       "description": text} for name, text in (
                          ("token", "access token (or Authorization: Bearer)"),
                          ("device_id", "the connecting device"),
                          ("last_id", "resume after this stream id"))],
                      "responses": {"101": {"description": "Switching Protocols (WebSocket upgrade)"}}}),
    },
    "/": {
        "get": Op("The web dashboard", {}, auth=False, tags=("web",),
                  extra={"responses": {"200": {"description": "HTML page",
                                               "content": {"text/html": {"schema": {"type": "string"}}}}}}),
    },
    "/static/{path}": {
        "get": Op("Dashboard assets", {}, auth=False, tags=("web",),
                  extra={"responses": {"200": {"description": "A file"},
                                       "403": {"description": "Outside the static directory"},
                                       "404": {"description": "No such file"}}}),
    },
}


def build(metrics: bool = True) -> dict[str, Any]:
    """The document for an application with (or without) the /metrics route."""
    spec = APISpec(
        title="NotiSync",
        version=notisync.__version__,
        openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "Mirror phone notifications to every other device of the user in real time. "
                             "Errors: {\"error\": {\"code\", \"message\", \"fields\"?}}.",
              "license": {"name": "MIT", "identifier": "MIT"}},
        security=[{BEARER: []}],
    )
    spec.components.security_scheme(BEARER, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                             "description": "access_token from POST /api/v1/auth/login"})
    spec.components.schema("Error", schema=out.ErrorSchema)
    spec.components.header("X-Request-ID", {"description": "this request's id (the client's, if it sent a sane one)",
                                            "schema": {"type": "string"}})
    for status, text in ERROR_TEXT.items():
        spec.components.response(f"Error{status}", {
            "description": text, "content": {JSON: {"schema": "Error"}},
            "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}})
    from notisync.openapi.hub import HUB_OPS  # it imports Op from here

    table = {**OPERATIONS, **HUB_OPS, **(METRICS_OP if metrics else {}), **WEB_OPS}
    for path, methods in table.items():
        spec.path(path=path, operations={m: _operation(path, op) for m, op in methods.items()})
    doc = spec.to_dict()
    # marshmallow's "give device_name or push_token" check, in JSON Schema terms.
    doc["components"]["schemas"]["DeviceUpdate"]["anyOf"] = [{"required": ["device_name"]}, {"required": ["push_token"]}]
    return doc


def _operation(path: str, op: Op) -> dict[str, Any]:
    extra = copy.deepcopy(op.extra)
    doc: dict[str, Any] = {"summary": op.summary, "tags": list(op.tags)}
    params = [{"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
              for name in _path_params(path)]
    if op.query is not None:
        params.append({"in": "query", "schema": op.query})
    params += extra.pop("parameters", [])
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {JSON: {"schema": op.body}}}
    answers: dict[str, Any] = {}
    for status, (text, schema) in op.ok.items():
        answer: dict[str, Any] = {"description": text,
                                  "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}}
        if schema is not None:
            answer["content"] = {JSON: {"schema": schema}}
        answers[str(status)] = answer
    answers.update(extra.pop("responses", {}))
    for status in op.errors:
        answers.setdefault(str(status), f"Error{status}")
    doc["responses"] = answers
    if not op.auth:
        doc["security"] = []
    doc.update(extra)
    return doc


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
