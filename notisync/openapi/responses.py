"""marshmallow schemas of what the server answers, for the OpenAPI document only.

The input schemas the handlers validate with live in ``notisync.schemas``;
these describe ``notisync.views`` and the other answers. Unknown fields
are allowed (``INCLUDE``) so a newer server may add fields without
breaking clients that validate against an older document.
"""
from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, validate

from notisync.schemas import CATEGORIES, DEVICE_TYPES


class _Out(Schema):
    class Meta:
        unknown = INCLUDE


def _stamp(**kw: object) -> fields.DateTime:
    return fields.DateTime(metadata={"description": "ISO-8601 UTC, ending in Z"}, **kw)  # type: ignore[arg-type]


class UserSchema(_Out):
    id = fields.String(required=True)
    email = fields.String(required=True)
    created_at = _stamp(required=True)


class UserEnvelopeSchema(_Out):
    user = fields.Nested(UserSchema, required=True)


class TokenPairSchema(_Out):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(required=True, metadata={"description": "seconds the access token lives"})
    user = fields.Nested(UserSchema, required=True)


class DeviceSchema(_Out):
    id = fields.String(required=True)
    device_name = fields.String(required=True)
    device_type = fields.String(required=True, validate=validate.OneOf(DEVICE_TYPES))
    status = fields.String(required=True, validate=validate.OneOf(["online", "offline"]))
    last_seen = _stamp(required=True, allow_none=True)
    created_at = _stamp(required=True)


class SessionTokensSchema(_Out):
    access_token = fields.String(required=True)
    refresh_token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.OneOf(["Bearer"]))
    expires_in = fields.Integer(required=True, metadata={"description": "seconds the access token lives"})


class DeviceCreatedSchema(DeviceSchema):
    session = fields.Nested(SessionTokensSchema, required=True,
                            metadata={"description": "a new session bound to this device"})


class TicketSchema(_Out):
    ticket = fields.String(required=True)
    expires_in = fields.Integer(required=True, metadata={"description": "seconds the ticket stays valid (30)"})


class DeviceListSchema(_Out):
    devices = fields.List(fields.Nested(DeviceSchema), required=True)


class NotificationActionOutSchema(_Out):
    id = fields.String(required=True)
    label = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(["button", "reply"]))


class NotificationSchema(_Out):
    id = fields.String(required=True)
    app_name = fields.String(required=True)
    title = fields.String(required=True)
    body = fields.String(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    priority = fields.Integer(required=True)
    is_read = fields.Boolean(required=True)
    is_dismissed = fields.Boolean(required=True)
    source_device_id = fields.String(required=True, allow_none=True)
    created_at = _stamp(required=True)
    updated_at = _stamp(allow_none=True)
    expires_at = _stamp(required=True)
    actions = fields.List(fields.Nested(NotificationActionOutSchema), required=True)
    version = fields.Integer(required=True, metadata={"description": "content version: 1, +1 per update in place"})


class InvokedSchema(_Out):
    """The ``action_invoked`` frame's data, as sent to the source device."""

    notification_id = fields.String(required=True)
    action_id = fields.String(required=True)
    reply_text = fields.String()
    device_id = fields.String(required=True, allow_none=True, metadata={"description": "the invoking device"})


class NotificationPageSchema(_Out):
    notifications = fields.List(fields.Nested(NotificationSchema), required=True)
    next_cursor = fields.String(required=True, allow_none=True,
                                metadata={"description": "pass as `before` for the next page; null on the last"})


class NodeStatsSchema(_Out):
    total_connections = fields.Integer(required=True, metadata={"description": "sockets on this node"})
    timestamp = _stamp(required=True)


class UserStatsSchema(_Out):
    user_id = fields.String(required=True)
    active_connections = fields.Integer(required=True, metadata={"description": "the caller's sockets, all nodes"})
    timestamp = _stamp(required=True)


class _Status(_Out):
    status = fields.String(required=True)


class _WebSocketHealth(_Status):
    connections = fields.Integer(required=True)


class _StoreHealth(_Status):
    backend = fields.String(required=True, validate=validate.OneOf(["sqlite", "mongodb"]))


class _RedisHealth(_Status):
    embedded = fields.Boolean()


class HealthSchema(_Out):
    status = fields.String(required=True, validate=validate.OneOf(["ok", "degraded"]))
    websocket = fields.Nested(_WebSocketHealth, required=True)
    store = fields.Nested(_StoreHealth, required=True)
    redis = fields.Nested(_RedisHealth, required=True)


class ErrorBodySchema(_Out):
    code = fields.String(required=True, metadata={"description": "stable snake_case code"})
    message = fields.String(required=True, metadata={"description": "human-readable text"})
    field_messages = fields.Dict(keys=fields.String(), values=fields.String(), data_key="fields",
                                 metadata={"description": "per-field messages for validation errors"})


class ErrorSchema(_Out):
    error = fields.Nested(ErrorBodySchema, required=True)
