"""CRUD over HTTP for every ConfigStore-backed resource (alert rules, channels, silences, CEP
patterns): one implementation, mounted once per resource."""

from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web

from services.api.auth import object_tenant, principal, tenant_filter, with_tenant
from services.control.config_store import ConfigStore
from services.api.problems import json_body


def mount(app: web.Application, base: str, store: ConfigStore,
          present: Callable[[dict], dict] | None = None) -> None:
    present = present or ConfigStore.public

    async def create(request: web.Request) -> web.Response:
        body = with_tenant(request, await json_body(request))
        rec = await asyncio.to_thread(store.put, body, None, create_only=True,
                                      tenant_id=principal(request).tenant)
        return web.json_response(present(rec), status=201,
                                 headers={"Location": f"{base}/{rec['id']}"})

    async def list_(request: web.Request) -> web.Response:
        items = store.list(tenant_filter(request))
        return web.json_response({"items": [present(r) for r in items], "total": len(items)})

    async def get(request: web.Request) -> web.Response:
        return web.json_response(present(store.get(request.match_info["id"], object_tenant(request))))

    async def replace(request: web.Request) -> web.Response:
        # ids are per tenant: a PUT writes the caller's own object of that id, never another's
        body = with_tenant(request, await json_body(request))
        rec = await asyncio.to_thread(store.put, body, request.match_info["id"],
                                      tenant_id=principal(request).tenant)
        return web.json_response(present(rec))

    async def delete(request: web.Request) -> web.Response:
        rec = await asyncio.to_thread(store.delete, request.match_info["id"], object_tenant(request))
        return web.json_response({"id": rec["id"], "version": rec["version"], "deleted": True})

    app.router.add_post(base, create)
    app.router.add_get(base, list_)
    app.router.add_get(base + "/{id}", get)
    app.router.add_put(base + "/{id}", replace)
    app.router.add_delete(base + "/{id}", delete)
