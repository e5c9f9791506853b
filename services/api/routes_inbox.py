"""GET /api/v1/inbox: what `inbox` channels received (connectors/channels/inbox.py), newest
first, tenant-scoped by the key (an operator sees every tenant, or `?tenant_id=`). `limit`
(1-1000, default 100) and `offset`. No PostgreSQL configured: 404 saying so; PostgreSQL down: 503.
"""

from __future__ import annotations

import asyncio
import os

import psycopg
from aiohttp import web

from connectors.channels import inbox as channel
from connectors.channels.inbox import InboxStore
from services.api.auth import tenant_filter
from services.api.problems import HTTPProblem

STORE = web.AppKey("inbox_store", InboxStore)
READY = web.AppKey("inbox_ready", list)


async def inbox(request: web.Request) -> web.Response:
    store = request.app.get(STORE)
    if store is None:
        raise HTTPProblem(404, "Not Found", "no inbox: GEOFLUX_PG_DSN is not set")
    try:
        limit = int(request.query.get("limit", 100))
        offset = int(request.query.get("offset", 0))
    except ValueError:
        raise HTTPProblem(400, "Bad Request", "limit and offset must be integers") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise HTTPProblem(400, "Bad Request", "limit must be 1..1000 and offset >= 0")
    tenant = tenant_filter(request)
    try:
        if not request.app[READY]:  # an inbox nobody has written to yet is empty, not an error
            await asyncio.to_thread(store.ensure_schema)
            request.app[READY].append(True)
        rows, total = await asyncio.to_thread(store.list, tenant, limit, offset)
    except psycopg.Error as exc:
        raise HTTPProblem(503, "Service Unavailable",
                          f"the inbox's database: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return web.json_response({"items": rows, "total": total})


def add_routes(app: web.Application) -> None:
    """The inbox lives in the database GEOFLUX_PG_DSN names (the delivery worker's too)."""
    if os.environ.get("GEOFLUX_PG_DSN"):
        app[STORE] = InboxStore(os.environ["GEOFLUX_PG_DSN"], channel.TABLE)
    app[READY] = []
    app.router.add_get("/api/v1/inbox", inbox)
