"""marshmallow schemas for every client input, REST and WebSocket alike.

Unknown fields are ignored rather than refused so an older server keeps
working with a newer client. ``load()`` turns marshmallow's errors into the
SPEC's 400 shape with per-field messages.
"""
from __future__ import annotations

from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from notisync.errors import ValidationFailed

CATEGORIES = ("Work", "Personal", "Junk")
DEVICE_TYPES = ("mobile", "web", "desktop")
ACTIONS = ("read", "dismissed", "clicked")
MAX_PAGE = 200


class WholeNumber(fields.Integer):
    """An integer as JSON means it: ``2`` and ``2.0`` are the same number
    (JSON Schema's "integer" agrees), while ``2.5``, ``"2"`` and ``true`` are not."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class RegisterSchema(_Base):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, validate=validate.Length(min=8, max=1024))


class LoginSchema(_Base):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    # A live device of this user: the new session is bound to it.
    device_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


class RefreshSchema(_Base):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class PasswordChangeSchema(_Base):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, validate=validate.Length(min=8, max=1024))


class AccountDeleteSchema(_Base):
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class DeviceCreateSchema(_Base):
    id = fields.UUID(load_default=None)
    device_name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    device_type = fields.String(required=True, validate=validate.OneOf(DEVICE_TYPES))
    push_token = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4096))


class DeviceUpdateSchema(_Base):
    device_name = fields.String(validate=validate.Length(min=1, max=100))
    push_token = fields.String(allow_none=True, validate=validate.Length(max=4096))

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give device_name or push_token", "_schema")


ACTION_TYPES = ("button", "reply")
MAX_ACTIONS = 3
MAX_REPLY = 2000


class NotificationActionSchema(_Base):
    """One of a notification's actions: a button, or a reply field (SPEC "Updates and actions")."""

    id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    label = fields.String(required=True, validate=validate.Length(min=1, max=64))
    type = fields.String(load_default="button", validate=validate.OneOf(ACTION_TYPES))


def _unique_action_ids(actions: list[dict[str, Any]]) -> None:
    ids = [a["id"] for a in actions]
    if len(set(ids)) != len(ids):
        raise ValidationError("action ids must be unique")


class NotificationCreateSchema(_Base):
    app_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    title = fields.String(load_default="", allow_none=True, validate=validate.Length(max=1000))
    body = fields.String(load_default="", allow_none=True, validate=validate.Length(max=16000))
    # None: the rules or the built-in table pick one (notisync/core/categories.py).
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    # Android's range (PRIORITY_MIN -2 … PRIORITY_MAX 2), with room above it.
    priority = WholeNumber(load_default=0, validate=validate.Range(min=-2, max=5))
    source_device_id = fields.UUID(load_default=None, allow_none=True)
    source_key = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=512))
    actions = fields.List(
        fields.Nested(NotificationActionSchema), load_default=list, allow_none=True,
        validate=[validate.Length(max=MAX_ACTIONS), _unique_action_ids],
    )


class ActionSchema(_Base):
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    device_id = fields.UUID(load_default=None, allow_none=True)


class WsActionSchema(_Base):
    notification_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))


class WsReauthSchema(_Base):
    """``reauth``: a fresh access token of the socket's own session, before the old one expires."""

    token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class WsStreamAckSchema(_Base):
    """``stream_ack``: the envelope id of the newest stream frame the client has handled."""

    last_id = fields.String(required=True, validate=validate.Length(min=1, max=80))


class InvokeSchema(_Base):
    """``POST /notifications/{id}/invoke``: one of the notification's actions, from another device."""

    action_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reply_text = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=MAX_REPLY))
    device_id = fields.UUID(load_default=None, allow_none=True)  # REST only; a socket is its device


class WsInvokeSchema(InvokeSchema):
    notification_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class NotificationListSchema(_Base):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PAGE))
    before = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    app_name = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    is_read = fields.Boolean(load_default=None)
    is_dismissed = fields.Boolean(load_default=None)
    q = fields.String(load_default=None, validate=validate.Length(min=1, max=200))


def load(schema: Schema, data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationFailed("body must be a JSON object", code="invalid_body")
    bad = _unencodable_fields(data)
    if bad:
        # JSON may spell lone surrogates (\ud800); no store, hash or
        # response can encode them as UTF-8, so refuse them up front.
        raise ValidationFailed("invalid fields", fields={k: "Not valid Unicode text." for k in bad})
    try:
        result = schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed("invalid fields", fields=_flatten(exc.messages)) from None
    # UUIDs travel as strings everywhere else in the server.
    return {k: (str(v) if hasattr(v, "hex") and not isinstance(v, str) else v) for k, v in result.items()}


def _unencodable_fields(data: Mapping[Any, Any]) -> list[str]:
    """Top-level keys whose key or value holds a string that is not valid UTF-8 text."""
    bad = []
    for key, value in data.items():
        stack = [key, value]  # iterative: parsed JSON may nest deeply
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    bad.append(key.encode("utf-8", "replace").decode() if isinstance(key, str) else "_schema")
                    break
            elif isinstance(item, Mapping):
                for k, v in item.items():
                    stack += (k, v)
            elif isinstance(item, list):
                stack.extend(item)
    return bad


def _flatten(messages: Any) -> dict[str, str]:
    if not isinstance(messages, dict):
        return {"_schema": " ".join(map(str, messages))}
    return {k: " ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in messages.items()}


REGISTER = RegisterSchema()
LOGIN = LoginSchema()
REFRESH = RefreshSchema()
PASSWORD_CHANGE = PasswordChangeSchema()
ACCOUNT_DELETE = AccountDeleteSchema()
DEVICE_CREATE = DeviceCreateSchema()
DEVICE_UPDATE = DeviceUpdateSchema()
NOTIFICATION_CREATE = NotificationCreateSchema()
ACTION = ActionSchema()
WS_ACTION = WsActionSchema()
WS_STREAM_ACK = WsStreamAckSchema()
WS_REAUTH = WsReauthSchema()
NOTIFICATION_LIST = NotificationListSchema()
INVOKE = InvokeSchema()
WS_INVOKE = WsInvokeSchema()
