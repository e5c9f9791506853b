"""GET /api/v1/audit/events: the audit trail in PostgreSQL, by time, subject, kind and place.

Query parameters (all optional): `from` (inclusive) and `to` (exclusive) as ISO 8601 or epoch
milliseconds; `entity_id`, `geofence_id`, `kind`, `type`; `bbox=minlon,minlat,maxlon,maxlat`;
`tenant_id` (operators only; a tenant key sees its own tenant); `limit` (<= the configured
maximum) and `offset`. A bad parameter is a 400 naming it; PostgreSQL down is a 503.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Mapping

from aiohttp import web

from connectors.audit_rows import KINDS, AuditQuery, ms_to_datetime
from connectors.audit_store import AuditStore
from geoflux.errors import ValidationError
from geoflux.settings import AuditSettings
from services.api.auth import tenant_filter
from services.api.problems import HTTPProblem

STORE = web.AppKey("audit_store", AuditStore)
MAX_LIMIT = web.AppKey("audit_max_limit", int)
_PARAMS = {"from", "to", "entity_id", "geofence_id", "kind", "type", "bbox", "tenant_id",
           "limit", "offset"}


def _bad(detail: str) -> HTTPProblem:
    return HTTPProblem(400, "Bad Request", detail)


def parse_time(name: str, raw: str) -> datetime:
    """ISO 8601 (a time without offset is UTC) or integer epoch milliseconds."""
    text = raw.strip()
    if text.lstrip("-").isdigit():
        try:
            return ms_to_datetime(int(text))
        except ValidationError as exc:
            raise _bad(f"{name}: {exc}") from None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _bad(f"{name}={raw!r} is neither ISO 8601 nor epoch milliseconds") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def parse_bbox(raw: str) -> tuple[float, float, float, float]:
    parts = raw.split(",")
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or any(v != v or v in (float("inf"), float("-inf")) for v in box):
        raise _bad(f"bbox={raw!r}: want four numbers minlon,minlat,maxlon,maxlat")
    minlon, minlat, maxlon, maxlat = box
    if not (-180 <= minlon <= maxlon <= 180 and -90 <= minlat <= maxlat <= 90):
        raise _bad(f"bbox={raw!r}: need -180 <= minlon <= maxlon <= 180 and "
                   "-90 <= minlat <= maxlat <= 90")
    return minlon, minlat, maxlon, maxlat


def parse_query(q: Mapping[str, str], tenant: str | None, max_limit: int) -> AuditQuery:
    """Pure: URL query -> AuditQuery, or HTTPProblem 400 with the reason."""
    unknown = sorted(set(q) - _PARAMS)
    if unknown:
        raise _bad(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(_PARAMS))}")
    start = parse_time("from", q["from"]) if q.get("from") else None
    end = parse_time("to", q["to"]) if q.get("to") else None
    if start and end and end <= start:
        raise _bad("to must be after from")
    kind = q.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise _bad(f"kind={kind!r}: one of {', '.join(sorted(KINDS))}")
    try:
        limit, offset = int(q.get("limit", min(100, max_limit))), int(q.get("offset", 0))
    except ValueError:
        raise _bad("limit and offset must be integers") from None
    if not 1 <= limit <= max_limit or offset < 0:
        raise _bad(f"need 1 <= limit <= {max_limit} and offset >= 0")
    return AuditQuery(tenant_id=tenant, start=start, end=end,
                      entity_id=q.get("entity_id") or None, geofence_id=q.get("geofence_id") or None,
                      kind=kind, type=q.get("type") or None,
                      bbox=parse_bbox(q["bbox"]) if q.get("bbox") else None, limit=limit,
                      offset=offset)


async def list_events(request: web.Request) -> web.Response:
    store: AuditStore = request.app[STORE]
    max_limit = request.app[MAX_LIMIT]
    query = parse_query(request.query, tenant_filter(request), max_limit)
    items = await asyncio.to_thread(store.query, query)  # TransientError -> 503 (problems.py)
    full = len(items) == query.limit  # there may be more: the next page starts here
    return web.json_response({"items": items, "count": len(items), "limit": query.limit,
                              "offset": query.offset,
                              "next_offset": query.offset + len(items) if full else None})



def add_routes(app: web.Application, dsn: str, settings: AuditSettings | None = None) -> None:
    s = settings or AuditSettings()
    # a short connect timeout: a database that is down answers 503 quickly, not after minutes
    app[STORE] = AuditStore(dsn, s.table, min(s.connect_timeout_s, 3.0))
    app[MAX_LIMIT] = s.max_query_rows
    app.router.add_get("/api/v1/audit/events", list_events)
