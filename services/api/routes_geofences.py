"""/api/v1/geofences: the registry over HTTP."""

from __future__ import annotations

import asyncio

from aiohttp import web

from services.api.auth import object_tenant, principal, tenant_filter, with_tenant
from services.control.geofence_registry import GeofenceRegistry
from services.api.problems import json_body, page

REGISTRY = web.AppKey("geofence_registry", GeofenceRegistry)


def _owned_feature(request: web.Request, body: object) -> tuple[object, str | None]:
    """The feature with its tenant settled by the key, and the tenant the registry checks."""
    if isinstance(body, dict) and isinstance(body.get("properties"), dict):
        body = {**body, "properties": with_tenant(request, body["properties"])}
    return body, principal(request).tenant


async def create(request: web.Request) -> web.Response:
    body, tenant = _owned_feature(request, await json_body(request))
    stored = await asyncio.to_thread(request.app[REGISTRY].put, body, None, create_only=True,
                                     tenant_id=tenant)
    return web.json_response(stored.feature(), status=201,
                             headers={"Location": f"/api/v1/geofences/{stored.record['geofence_id']}"})


async def replace(request: web.Request) -> web.Response:
    body, tenant = _owned_feature(request, await json_body(request))
    stored = await asyncio.to_thread(request.app[REGISTRY].put, body, request.match_info["id"],
                                     tenant_id=tenant)
    return web.json_response(stored.feature())


async def get(request: web.Request) -> web.Response:
    return web.json_response(request.app[REGISTRY].get(request.match_info["id"],
                                                       object_tenant(request)).feature())


async def delete(request: web.Request) -> web.Response:
    gone = await asyncio.to_thread(request.app[REGISTRY].delete, request.match_info["id"],
                                   object_tenant(request))
    return web.json_response({"id": gone.record["geofence_id"], "version": gone.record["version"],
                              "deleted": True})


async def list_(request: web.Request) -> web.Response:
    offset, limit = page(request)
    tenant = tenant_filter(request)
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
