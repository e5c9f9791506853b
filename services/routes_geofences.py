"""/api/v1/geofences: the registry over HTTP."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.geofence_registry import GeofenceRegistry
from services.problems import HTTPProblem, json_body

REGISTRY = web.AppKey("geofence_registry", GeofenceRegistry)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, "Bad Request", f"{name} must be an integer") from None
    if not lo <= value <= hi:
        raise HTTPProblem(400, "Bad Request", f"{name} must be between {lo} and {hi}")
    return value


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    stored = await asyncio.to_thread(request.app[REGISTRY].put, body, None, create_only=True)
    return web.json_response(stored.feature(), status=201,
                             headers={"Location": f"/api/v1/geofences/{stored.record['geofence_id']}"})


async def replace(request: web.Request) -> web.Response:
    body = await json_body(request)
    stored = await asyncio.to_thread(request.app[REGISTRY].put, body, request.match_info["id"])
    return web.json_response(stored.feature())


async def get(request: web.Request) -> web.Response:
    return web.json_response(request.app[REGISTRY].get(request.match_info["id"]).feature())


async def delete(request: web.Request) -> web.Response:
    gone = await asyncio.to_thread(request.app[REGISTRY].delete, request.match_info["id"])
    return web.json_response({"id": gone.record["geofence_id"], "version": gone.record["version"],
                              "deleted": True})


async def list_(request: web.Request) -> web.Response:
    offset = _int_param(request, "offset", 0, 0, 10**9)
    limit = _int_param(request, "limit", 100, 1, 1000)
    tenant = request.query.get("tenant_id")
    items, total = request.app[REGISTRY].list(tenant, offset, limit)
    body = {"type": "FeatureCollection", "features": [f.feature() for f in items],
            "total": total, "offset": offset, "limit": limit}
    if offset + limit < total:
        body["next"] = f"/api/v1/geofences?offset={offset + limit}&limit={limit}"
    return web.json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/geofences", create)
    app.router.add_get("/api/v1/geofences", list_)
    app.router.add_get("/api/v1/geofences/{id}", get)
    app.router.add_put("/api/v1/geofences/{id}", replace)
    app.router.add_delete("/api/v1/geofences/{id}", delete)
