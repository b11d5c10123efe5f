"""GET /api/v1/openapi.json: a valid OpenAPI 3.1 document that covers every route the application serves."""
from __future__ import annotations

import tornado.web

from tests.harness import Node, call

METHODS = ("get", "post", "put", "delete")


# The application and the validator are imported inside the tests, not at
# collection: their tens of thousands of objects would slow every full
# garbage collection of the test process (tests/test_gctune.py times one).


def app_routes(*argv: str) -> dict[type, str]:
    from handlers.access import route_templates
    from notisync.runtime.app import all_routes
    from notisync.runtime.config import parse_settings

    return route_templates(all_routes(parse_settings(list(argv))))


def validate(doc: dict) -> None:
    from openapi_spec_validator import validate as check

    check(doc)  # raises on any violation of the OpenAPI 3.1 schema


def served_methods(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


async def test_document_is_valid_openapi_31_and_covers_every_route(node: Node) -> None:
    r = await call(node, "GET", "/api/v1/openapi.json")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.body
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    templates = app_routes()
    assert set(templates.values()) == set(doc["paths"]), "routes and document differ"
    for handler, path in templates.items():
        assert served_methods(handler) == set(doc["paths"][path]), path
    # The bearer scheme, applied by default and lifted where no token is needed.
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "access_token from POST /api/v1/auth/login, or a device API key (nsk_…)"}
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    assert "security" not in doc["paths"]["/api/v1/devices"]["get"]
    # The SPEC's error shape, referenced by every error answer.
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    body = doc["components"]["schemas"]["ErrorBody"]
    assert set(body["properties"]) == {"code", "message", "fields"} and set(body["required"]) == {"code", "message"}
    assert doc["paths"]["/api/v1/devices"]["post"]["responses"]["401"] == {"$ref": "#/components/responses/Error401"}
    # Request bodies are the handlers' own marshmallow schemas.
    create = doc["components"]["schemas"]["NotificationCreate"]
    assert create["required"] == ["app_name"]
    assert create["properties"]["category"]["enum"] == ["Work", "Personal", "Junk"]


def test_the_document_without_metrics_has_no_metrics_route() -> None:
    from notisync.openapi.document import build

    routes = app_routes("--metrics", "off")
    doc = build(metrics=False)
    assert "/metrics" not in doc["paths"] and set(routes.values()) == set(doc["paths"])
    validate(doc)
