"""OGC API - Processes discovery: the landing page `/`, `/conformance`, and a plain HTML list
of the operations at `/api/v1/docs` (the landing page's service-doc).

OGC clients (OWSLib's `ogcapi.processes.Processes`, QGIS plugins) start at the landing page and
follow its links, so the hrefs are absolute and every link carries a `type` (OWSLib reads
`link['type']` of each link while looking for the API definition). The conformance list names
only the classes the routes in services/api/routes_processes.py implement; `job-list` is not
claimed: GET /jobs filters by status and processID and pages, but has no `type`, `datetime`
or `minDuration`/`maxDuration` filters, which that class requires.
"""

from __future__ import annotations

import html

from aiohttp import web

from services.api.openapi import MEDIA_TYPE, OPENAPI_PATH, Op

DOCS_PATH = "/api/v1/docs"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
CONFORMS_TO = [CONF + c for c in ("core", "ogc-process-description", "json", "dismiss", "callback")]
JSON = "application/json"


def landing(base: str) -> dict:
    """Pure: the landing page with links under `base` (scheme://host[:port])."""
    def link(path: str, rel: str, type_: str, title: str) -> dict:
        return {"href": base + path, "rel": rel, "type": type_, "title": title}

    return {"title": "geoflux",
            "description": "Geofence events, CEP, alerts and geoprocessing jobs on Apache Kafka; "
                           "geoprocessing as OGC API - Processes (Part 1: Core).",
            "links": [link("/", "self", JSON, "this document"),
                      link(OPENAPI_PATH, "service-desc", MEDIA_TYPE, "the API definition (OpenAPI 3.1)"),
                      link(DOCS_PATH, "service-doc", "text/html", "the API's operations"),
                      link("/conformance", REL + "conformance", JSON, "conformance classes"),
                      link("/processes", REL + "processes", JSON, "the processes"),
                      link("/jobs", REL + "job-list", JSON, "the jobs")]}


def docs_page(ops: list[Op]) -> str:
    """Pure: every operation as a row; for people, the JSON document is for programs."""
    rows = "".join(f"<tr><td>{op.method}</td><td><code>{html.escape(op.path)}</code></td>"
                   f"<td>{html.escape(op.summary)}</td><td>{'API key' if op.security == 'key' else op.security}"
                   "</td></tr>" for op in sorted(ops, key=lambda o: (o.path, o.method)))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>geoflux API</title></head><body>"
            f"<h1>geoflux HTTP API</h1><p>Machine-readable: <a href='{OPENAPI_PATH}'>{OPENAPI_PATH}</a> "
            "(OpenAPI 3.1). Send <code>Authorization: Bearer &lt;key&gt;</code> or <code>X-API-Key</code>; "
            "errors are RFC 7807 problem documents.</p><table border='1' cellpadding='4'>"
            "<tr><th>method</th><th>path</th><th>what</th><th>auth</th></tr>"
            f"{rows}</table></body></html>")


def add_routes(app: web.Application, ops: list[Op]) -> None:
    page = docs_page(ops)

    async def landing_page(request: web.Request) -> web.Response:
        return web.json_response(landing(str(request.url.origin())))

    async def conformance(_request: web.Request) -> web.Response:
        return web.json_response({"conformsTo": CONFORMS_TO})

    async def docs(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app.router.add_get("/", landing_page)
    app.router.add_get("/conformance", conformance)
    app.router.add_get(DOCS_PATH, docs)
