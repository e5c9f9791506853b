"""The OpenAPI 3.1 document of the HTTP API, built from a table of operations.

The table is `services/api/openapi_paths.py`: one `Op` per method and path. The document is served,
without an API key, at `GET /api/v1/openapi.json` (it is the same for every caller and names no
tenant's data; OGC clients fetch it from the landing page's `service-desc` link before they
know about keys).

Adding a route: register it in its `routes_*.py`, then add an `Op` for it to
`openapi_paths.py` (or a `crud(...)` line for a whole ConfigStore resource) with its request
body schema, its success responses and the errors it can answer.
`tests/integration/test_openapi.py` walks `app.router.routes()` and fails, naming the route,
until every registered method and path is described and every described one is registered;
the schemathesis run (`tests/integration/test_api_fuzz.py`) then holds the route to what the
table says: no 5xx, documented status codes and bodies, 4xx as problem documents.

Errors are RFC 7807 problem documents (`application/problem+json`, services/api/problems.py);
every operation lists the error statuses it answers with a reference to the one schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from aiohttp import web

OPENAPI_PATH = "/api/v1/openapi.json"
MEDIA_TYPE = "application/vnd.oai.openapi+json;version=3.1"
PROBLEM_MEDIA = "application/problem+json"
JSON = "application/json"
_PARAM = re.compile(r"{(\w+)}")
ERROR_TITLES = {400: "Bad request: malformed JSON or a parameter out of range",
                401: "No API key, or an unknown one (or a webhook's bad signature)",
                403: "The key may not do this: another tenant named, or an operator-only resource",
                404: "Not found (another tenant's object is not found either)",
                410: "Gone", 413: "Too large", 422: "The body is well-formed but refused, with the reason",
                429: "Over a quota: retry after Retry-After seconds",
                503: "A dependency (broker, database) is unavailable: retry", 504: "Timed out"}


# -- JSON Schema shorthands used by the table ----------------------------------------------------
def obj(required: Iterable[str] = (), closed: bool = False, **props: dict) -> dict:
    """An object with `props`; `closed` forbids other properties (the handler refuses them)."""
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


def arr(items: dict, **kw) -> dict:
    return {"type": "array", "items": items, **kw}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
ID = {"type": "string", "minLength": 1}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
ANY_OBJ = {"type": "object"}
PROBLEM = obj(["type", "title", "status", "detail"], type=STR, title=STR, status=INT,
              detail={"type": "string", "minLength": 1})


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: dict = field(default_factory=lambda: STR)
    where: str = "query"  # query | header (path parameters come from the path itself)
    required: bool = False
    description: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "in": self.where, "required": self.required,
                "schema": self.schema, **({"description": self.description} if self.description else {})}


@dataclass(frozen=True, slots=True)
class Op:
    """One method on one path. `responses`: success status -> JSON Schema of an application/json
    body, or (media type, schema), or None (no body). `errors`: the problem statuses it answers. `security`: "key"
    (an API key), "open" (none) or "signed" (a webhook authenticated by its own signature)."""
    method: str
    path: str
    summary: str
    tag: str
    responses: dict[int, Any]
    body: dict | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = (400, 401, 404)
    security: str = "key"
    description: str = ""

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[{}]", "", self.path).strip("/").replace("-", "_").replace(".", "_")
        return f"{self.method.lower()}_{words.replace('/', '_') or 'root'}"

    def to_json(self) -> dict:
        params = [{"name": n, "in": "path", "required": True, "schema": ID}
                  for n in _PARAM.findall(self.path)] + [p.to_json() for p in self.params]
        out: dict[str, Any] = {"operationId": self.operation_id, "summary": self.summary,
                               "tags": [self.tag], "responses": {}}
        if self.description:
            out["description"] = self.description
        if params:
            out["parameters"] = params
        if self.body is not None:
            out["requestBody"] = {"required": self.body_required,
                                  "content": {JSON: {"schema": self.body}}}
        for status, spec in self.responses.items():
            resp = out["responses"][str(status)] = {"description": "success" if status < 300 else "redirect"}
            if spec is not None:  # None: no body worth describing (a redirect)
                media, schema = spec if isinstance(spec, tuple) else (JSON, spec)
                resp["content"] = {media: {"schema": schema}}
        errors = set(self.errors) | ({401} if self.security != "open" else set())
        for status in sorted(errors):
            out["responses"][str(status)] = {"$ref": f"#/components/responses/E{status}"}
        if self.security == "open":
            out["security"] = []
        elif self.security == "signed":
            out["security"] = []
            out["description"] = (out.get("description", "") + " No API key: the request is "
                                  "authenticated by its own signature or token.").strip()
        return out


def document(ops: Iterable[Op], title: str = "geoflux", version: str = "1") -> dict:
    """Pure: the OpenAPI 3.1 document of `ops`."""
    paths: dict[str, dict] = {}
    for op in ops:
        method = op.method.lower()
        if method in paths.setdefault(op.path, {}):
            raise ValueError(f"{op.method} {op.path} is described twice")
        paths[op.path][method] = op.to_json()
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Geofence events, CEP, geoprocessing jobs (OGC API - Processes) and "
                                "alerts on Apache Kafka. Errors are RFC 7807 problem documents."},
        "paths": paths,
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer <API key> (GEOFLUX_API_KEYS)"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {"Problem": PROBLEM},
            "responses": {f"E{s}": {"description": d, "content": {
                PROBLEM_MEDIA: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
                for s, d in ERROR_TITLES.items()}}}


def registered(app: web.Application) -> set[tuple[str, str]]:
    """(METHOD, path template) of every route the app answers, but HEAD (aiohttp adds one per
    GET) and static file directories (the console's assets are files, not an API)."""
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or isinstance(route.resource, web.StaticResource):
            continue
        out.add((route.method, route.resource.canonical))
    return out


def mismatches(app: web.Application, ops: Iterable[Op]) -> tuple[set, set]:
    """(registered but not described, described but not registered)."""
    described = {(op.method.upper(), op.path) for op in ops}
    routes = registered(app)
    return routes - described, described - routes


def add_routes(app: web.Application, ops: Iterable[Op]) -> None:
    body = json.dumps(document(ops), separators=(",", ":")).encode()

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": MEDIA_TYPE})

    app.router.add_get(OPENAPI_PATH, openapi)
