"""Occupancy, the seed's queryable state (services/occupancy.py keeps it):

    GET /api/v1/geofences/{id}/occupants   {"items": [{"entity_id", "since"}], "total"}  (paged)
    GET /api/v1/entities/{id}/geofences     {"items": [{"geofence_id", "since"}], "total"}

Tenant-scoped like every object: a tenant key asks about its own fence or entity (another
tenant's fence is 404); an operator names the tenant with ?tenant_id= where an id is ambiguous.
While the view is still reading the changelog after a start, answers are 503 with Retry-After.
"""

from __future__ import annotations

from aiohttp import web

from services.auth import object_tenant
from services.occupancy import MembershipView
from services.problems import HTTPProblem, page
from services.routes_geofences import REGISTRY

VIEW = web.AppKey("membership_view", MembershipView)


def _ready(view: MembershipView) -> None:
    if view.behind != 0:
        detail = ("the occupancy view stopped; see the API's log" if view.behind == -1 else
                  f"the occupancy view is still reading the evaluator's changelog ({view.behind or '?'} records left)")
        raise HTTPProblem(503, "Service Unavailable", detail)


async def occupants(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    fence = request.app[REGISTRY].get(request.match_info["id"], object_tenant(request)).record
    _ready(view)
    offset, limit = page(request)
    items, total = view.occupants(fence["tenant_id"], fence["geofence_id"], offset, limit)
    return web.json_response({"geofence_id": fence["geofence_id"], "tenant_id": fence["tenant_id"],
                              "items": items, "total": total, "offset": offset, "limit": limit})


async def entity_fences(request: web.Request) -> web.Response:
    view = request.app[VIEW]
    tenant = object_tenant(request)
    if tenant is None:
        raise HTTPProblem(422, "Unprocessable Entity", "entity ids are per tenant: give tenant_id")
    _ready(view)
    items = view.fences_of(tenant, request.match_info["id"])
    return web.json_response({"entity_id": request.match_info["id"], "tenant_id": tenant,
                              "items": items, "total": len(items)})


def add_routes(app: web.Application, view: MembershipView) -> list:
    app[VIEW] = view.start()
    app.router.add_get("/api/v1/geofences/{id}/occupants", occupants)
    app.router.add_get("/api/v1/entities/{id}/geofences", entity_fences)
    return [view]
