"""OpenAPI entries for rules, device preferences and the digest (merged by document.py)."""
from __future__ import annotations

from notisync import hub_schemas, schemas
from notisync.openapi.document import Op

_AUTHED = (401, 503)
_BODY = (400, 413)
_TAGS = ("rules",)

HUB_OPS: dict[str, dict[str, Op]] = {
    "/api/v1/rules": {
        "get": Op("The caller's rules in position order", {200: ("{rules: [...]}", None)}, _AUTHED, tags=_TAGS),
        "post": Op("Add a rule (at most 100 per user)", {201: ("Rule", None)}, _BODY + _AUTHED + (409,),
                   body=hub_schemas.RULE, tags=_TAGS),
    },
    "/api/v1/rules/test": {
        "post": Op("Dry run: the rules that match a sample notification, and the result",
                   {200: ("{matched, result}", None)}, _BODY + _AUTHED + (403, 404),
                   body=schemas.NOTIFICATION_CREATE, tags=_TAGS),
    },
    "/api/v1/rules/{rule_id}": {
        "put": Op("Change a rule", {200: ("Rule", None)}, _BODY + _AUTHED + (404,),
                  body=hub_schemas.RULE_UPDATE, tags=_TAGS),
        "delete": Op("Delete a rule", {204: ("Deleted", None)}, _AUTHED + (404,), tags=_TAGS),
    },
    "/api/v1/devices/{device_id}/preferences": {
        "get": Op("A device's preferences", {200: ("Preferences", None)}, _AUTHED + (404,), tags=_TAGS),
        "put": Op("Change some of a device's preferences", {200: ("Preferences", None)},
                  _BODY + _AUTHED + (404,), body=hub_schemas.PREFERENCES, tags=_TAGS),
    },
    "/api/v1/digest": {
        "get": Op("One local day's summary", {200: ("Digest", None)}, (400,) + _AUTHED,
                  query=hub_schemas.DIGEST_QUERY, tags=_TAGS),
    },
    "/api/v1/digest/schedule": {
        "get": Op("The daily digest's schedule", {200: ("Schedule", None)}, _AUTHED, tags=_TAGS),
        "put": Op("Set the daily digest's schedule", {200: ("Schedule", None)}, _BODY + _AUTHED,
                  body=hub_schemas.DIGEST_SCHEDULE, tags=_TAGS),
    },
}
