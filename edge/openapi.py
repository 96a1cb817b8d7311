"""``/openapi.json``: an OpenAPI 3.1 document generated from ``edge.rest.ROUTES``.

Generated, never hand-written, so it cannot drift from the router: paths and methods, path and query
parameters, JSON bodies (from the same ``edge.schema`` field tables the validator uses), the signing
headers of signed routes, and the error body with every code of ``edge.errors.ERRORS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.errors import ERRORS
from edge.schema import F, json_schema

if TYPE_CHECKING:
    from edge.rest import Route

_SIGNED_HEADERS = (
    ("X-API-KEY", True, "API key id"),
    ("X-TIMESTAMP", True, "request time, ms since the epoch"),
    ("X-RECV-WINDOW", False, "validity window in ms (default 5000, max 60000)"),
    ("X-SIGNATURE", True, "hex HMAC-SHA256 of timestamp + METHOD + path_with_query + body"),
)


def _param(name: str, where: str, f: F | None, required: bool) -> dict[str, Any]:
    sch = json_schema((f,))["properties"][f.name] if f is not None else {"type": "string"}
    return {"name": name, "in": where, "required": required, "schema": sch}


def openapi(routes: tuple[Route, ...]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.op, "tags": list(r.tags)}
        params: list[dict[str, Any]] = []
        for seg in r.template.split("/"):
            if seg.startswith("{"):
                name = seg[1:-1]
                f = F(name, "integer", lo=1) if name == "orderId" else F(name, "string")
                params.append(_param(name, "path", f, True))
        for f in r.query:
            params.append(_param(f.name, "query", f, f.required))
        if r.auth != "public":
            for h, req, doc in _SIGNED_HEADERS:
                p = _param(h, "header", None, req)
                p["description"] = doc
                params.append(p)
            op["security"] = [{"ApiKey": []}]
            op["x-role"] = r.auth
            op["x-weight"] = r.weight
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": json_schema(r.body)}}}
        op["responses"] = {
            "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
            "default": {"description": "error", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        }
        paths.setdefault(r.template, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "spotx API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"}},
            "schemas": {"Error": {
                "type": "object", "required": ["code", "error", "message"],
                "properties": {
                    "code": {"type": "integer", "enum": sorted(e.code for e in ERRORS.values())},
                    "error": {"type": "string", "enum": list(ERRORS)},
                    "message": {"type": "string"}}}},
        },
    }
