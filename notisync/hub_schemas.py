"""marshmallow schemas for rules, device preferences and the digest (SPEC "Rules, device
preferences, digest"); errors come back as 400 with one message per field, nested
fields named with dots (``match.app_name``, ``quiet_hours.timezone``)."""
from __future__ import annotations

import re
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from notisync.errors import ValidationFailed
from notisync.schemas import CATEGORIES, DEVICE_TYPES, WholeNumber, load as base_load

TEXT = validate.Length(min=1, max=200)
HHMM = validate.Regexp(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="Use HH:MM, 00:00 to 23:59.")
DATE = validate.Regexp(r"^\d{4}-\d{2}-\d{2}$", error="Use YYYY-MM-DD.")
_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
MAX_APPS = 200


def check_timezone(name: str) -> None:
    """An IANA zone name this machine knows (``Europe/Paris``, ``UTC``)."""
    if len(name) > 64 or not _ZONE_NAME.match(name):
        raise ValidationError("Not a time zone name (Area/City).")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError("Unknown time zone.") from None


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class MatchSchema(_Base):
    app_name = fields.String(validate=TEXT)
    title_contains = fields.String(validate=TEXT)
    body_contains = fields.String(validate=TEXT)
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    source_device_id = fields.String(validate=validate.Length(min=1, max=64))


class ActionSchema(_Base):
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    priority = WholeNumber(validate=validate.Range(min=-2, max=5))
    silent = fields.Boolean()
    drop = fields.Boolean()
    only_device_types = fields.List(
        fields.String(validate=validate.OneOf(DEVICE_TYPES)), validate=validate.Length(min=1, max=3)
    )
    skip_device_ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                                  validate=validate.Length(max=100))

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give at least one action", "_schema")


class RuleSchema(_Base):
    name = fields.String(load_default="", validate=validate.Length(max=100))
    enabled = fields.Boolean(load_default=True)
    position = WholeNumber(load_default=None, allow_none=True, validate=validate.Range(min=-1_000_000, max=1_000_000))
    match = fields.Nested(MatchSchema, required=True)
    action = fields.Nested(ActionSchema, required=True)


class RuleUpdateSchema(_Base):
    name = fields.String(validate=validate.Length(max=100))
    enabled = fields.Boolean()
    position = WholeNumber(validate=validate.Range(min=-1_000_000, max=1_000_000))
    match = fields.Nested(MatchSchema)
    action = fields.Nested(ActionSchema)

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("give at least one of name, enabled, position, match, action", "_schema")


class QuietHoursSchema(_Base):
    start = fields.String(required=True, validate=HHMM)
    end = fields.String(required=True, validate=HHMM)
    timezone = fields.String(required=True, validate=check_timezone)
    days = fields.List(WholeNumber(validate=validate.Range(min=0, max=6)), allow_none=True,
                       validate=validate.Length(min=1, max=7))


_APPS = fields.List(fields.String(validate=TEXT), validate=validate.Length(max=MAX_APPS))


class PreferencesSchema(_Base):
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    muted_apps = _APPS
    blocked_apps = fields.List(fields.String(validate=TEXT), validate=validate.Length(max=MAX_APPS))
    sync_dismissals = fields.Boolean()

    @validates_schema
    def _not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(
                "give at least one of quiet_hours, muted_apps, blocked_apps, sync_dismissals", "_schema"
            )


class DigestQuerySchema(_Base):
    date = fields.String(load_default=None, validate=DATE)
    timezone = fields.String(load_default="UTC", validate=check_timezone)


class DigestScheduleSchema(_Base):
    enabled = fields.Boolean(required=True)
    time = fields.String(required=True, validate=HHMM)
    timezone = fields.String(required=True, validate=check_timezone)
    device_ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)), load_default=None,
                             allow_none=True, validate=validate.Length(min=1, max=100))


def load(schema: Schema, data: Any) -> dict[str, Any]:
    """``schemas.load`` with nested errors flattened to dotted field names."""
    if not isinstance(data, Mapping):
        raise ValidationFailed("body must be a JSON object", code="invalid_body")
    try:
        return base_load(schema, data)
    except ValidationFailed as exc:
        try:
            schema.load(data)
        except ValidationError as inner:
            exc.fields = flatten(inner.messages)
        raise


def flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    if not isinstance(messages, Mapping):
        return {prefix or "_schema": " ".join(map(str, messages)) if isinstance(messages, list) else str(messages)}
    out: dict[str, str] = {}
    for key, value in messages.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name))
    return out


RULE = RuleSchema()
RULE_UPDATE = RuleUpdateSchema()
PREFERENCES = PreferencesSchema()
DIGEST_QUERY = DigestQuerySchema()
DIGEST_SCHEDULE = DigestScheduleSchema()
