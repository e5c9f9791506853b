"""What the API knows of entities and fences from the stream, tenant-scoped like every object
(a tenant key asks about its own; an operator names the tenant with ?tenant_id= where an id is
ambiguous):

    GET    /api/v1/geofences/{id}/occupants   who is inside now: {"items": [{"entity_id", "since"}], "total"}
    GET    /api/v1/entities/{id}/geofences     the fences it is inside: {"items": [{"geofence_id", "since"}]}
    PUT    /api/v1/entities/{id}/attributes    {"attributes": {"class": "hazmat", ...}}: geo.entities
    GET    /api/v1/entities/{id}/attributes
    DELETE /api/v1/entities/{id}/attributes

Occupancy comes from the evaluator's own state (services/api/views.py); while a view is still
reading its topic after a start, answers are 503. Attributes are joined onto the entity's
geofence events by the evaluator (rules and patterns match and template on `attributes.X`).
"""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from connectors.kafka_producer import ReliableProducer
from geoflux.errors import ValidationError
from geoflux.keys import scoped
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api.auth import object_tenant
from services.api.problems import HTTPProblem, json_body, page
from services.api.routes_geofences import REGISTRY
from services.api.views import AttributesView, FollowedStore, MembershipView

VIEWS = web.AppKey("entity_views", dict)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_ATTRIBUTES, MAX_VALUE = 50, 256


def _ready(view: FollowedStore) -> None:
    if view.behind != 0:
        detail = ("the view stopped; see the API's log" if view.behind == -1 else
                  f"the view is still reading {view.topic} ({view.behind or '?'} records left)")
        raise HTTPProblem(503, "Service Unavailable", detail)


def _tenant(request: web.Request) -> str:
    tenant = object_tenant(request)
    if tenant is None:
        raise ValidationError("entity ids are per tenant: give tenant_id")
    return tenant


def parse_attributes(body: object) -> dict[str, str]:
    """Pure: {"attributes": {name: scalar}} -> name -> string, or the reason it is refused."""
    if not isinstance(body, dict) or not isinstance(body.get("attributes"), dict):
        raise ValidationError('expected {"attributes": {"name": "value", ...}}')
    attrs = body["attributes"]
    if len(attrs) > MAX_ATTRIBUTES:
        raise ValidationError(f"{len(attrs)} attributes: at most {MAX_ATTRIBUTES}")
    out = {}
    for name, value in attrs.items():
        if not _NAME.match(name):
            raise ValidationError(f"attribute name {name[:80]!r}: 1-64 letters, digits, _ . -")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError(f"attribute {name}: a string or a number")
        text = str(value)
        if len(text) > MAX_VALUE:
            raise ValidationError(f"attribute {name}: at most {MAX_VALUE} characters")
        out[name] = text
    return out


async def occupants(request: web.Request) -> web.Response:
    view = request.app[VIEWS]["members"]
    fence = request.app[REGISTRY].get(request.match_info["id"], object_tenant(request)).record
    _ready(view)
    offset, limit = page(request)
    items, total = view.occupants(fence["tenant_id"], fence["geofence_id"], offset, limit)
    return web.json_response({"geofence_id": fence["geofence_id"], "tenant_id": fence["tenant_id"],
                              "items": items, "total": total, "offset": offset, "limit": limit})


async def entity_fences(request: web.Request) -> web.Response:
    view, tenant = request.app[VIEWS]["members"], _tenant(request)
    _ready(view)
    items = view.fences_of(tenant, request.match_info["id"])
    return web.json_response({"entity_id": request.match_info["id"], "tenant_id": tenant,
                              "items": items, "total": len(items)})


async def get_attributes(request: web.Request) -> web.Response:
    view, tenant = request.app[VIEWS]["attributes"], _tenant(request)
    _ready(view)
    rec = view.get(tenant, request.match_info["id"])
    if rec is None:
        raise HTTPProblem(404, "Not Found", f"no attributes for entity {request.match_info['id']}")
    return web.json_response(rec)


async def _write(request: web.Request, attributes: dict[str, str], deleted: bool) -> dict:
    views, ctx = request.app[VIEWS], request.app[VIEWS]["ctx"]
    tenant, entity = _tenant(request), request.match_info["id"]
    if not 0 < len(entity) <= 200:
        raise ValidationError("entity id: 1-200 characters")
    current = views["attributes"].get(tenant, entity)
    if deleted and current is None:
        raise HTTPProblem(404, "Not Found", f"no attributes for entity {entity}")
    rec = {"entity_id": entity, "tenant_id": tenant, "attributes": attributes,
           "version": (current or {}).get("version", 0) + 1, "updated_ms": int(time.time() * 1000),
           "deleted": deleted}
    t, codec = ctx["topic"], ctx["codec"]
    records = [(t, codec.encode(t, "EntityAttributes", rec), scoped(tenant, entity))]
    if deleted:
        records.append((t, None, scoped(tenant, entity)))
    await asyncio.to_thread(ctx["producer"].deliver, records)
    views["attributes"].remember(rec)
    return rec


async def put_attributes(request: web.Request) -> web.Response:
    return web.json_response(await _write(request, parse_attributes(await json_body(request)), False))


async def delete_attributes(request: web.Request) -> web.Response:
    rec = await _write(request, {}, True)
    return web.json_response({"id": rec["entity_id"], "version": rec["version"], "deleted": True})


def add_routes(app: web.Application, members: MembershipView, attributes: AttributesView,
               codec: AvroCodec, producer: ReliableProducer) -> list:
    app[VIEWS] = {"members": members.start(), "attributes": attributes.start(),
                  "ctx": {"codec": codec, "producer": producer, "topic": topic(attributes.logical, attributes.kafka)}}
    app.router.add_get("/api/v1/geofences/{id}/occupants", occupants)
    app.router.add_get("/api/v1/entities/{id}/geofences", entity_fences)
    app.router.add_get("/api/v1/entities/{id}/attributes", get_attributes)
    app.router.add_put("/api/v1/entities/{id}/attributes", put_attributes)
    app.router.add_delete("/api/v1/entities/{id}/attributes", delete_attributes)
    return [members, attributes]
