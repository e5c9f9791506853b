"""The `inbox` channel against a real PostgreSQL, and GET /api/v1/inbox over real HTTP: a
delivery is kept once per delivery id however often it is retried, the database down is a
transient error (the delivery worker retries it), and a tenant key sees only its own inbox."""

import asyncio
import json
import threading
import uuid

import psycopg
import pytest
from aiohttp import web

from connectors.channels.base import Notification, build_channel, parse_channel
from geoflux.errors import PermanentError, TransientError, ValidationError
from services.api.auth import auth_middleware, load_api_keys
from services.devstack.local_process import free_port
from services.api.problems import problem_middleware
from tests.integration.geo_helpers import http

pytestmark = pytest.mark.postgres


@pytest.fixture
def inbox(postgres_dsn, monkeypatch):
    table = f"inbox_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GEOFLUX_PG_DSN", postgres_dsn)
    monkeypatch.setattr("connectors.channels.inbox.TABLE", table)  # this test's own table
    channel = build_channel(parse_channel({"name": "inbox", "kind": "inbox", "tenant_id": "acme",
                                           "settings": {"retention_days": 1}}))
    assert channel.store.table == table
    return channel


def note(delivery_id: str, tenant: str = "acme", title: str = "truck-1 entered zone-7") -> Notification:
    return Notification(delivery_id, f"alert-{delivery_id}", tenant, "high", title, "at 13.4, 52.5",
                        {"geofence_id": "zone-7"}, 1_795_000_000_000)


def test_a_retried_delivery_is_kept_once(inbox, postgres_dsn):
    assert asyncio.run(inbox.send(note("d1"))) == "kept"
    assert asyncio.run(inbox.send(note("d1"))) == "kept once (arrived 2 times)"
    assert asyncio.run(inbox.send(note("d2"))) == "kept"
    rows, total = inbox.store.list("acme", 10, 0)
    assert total == 2 and [r["delivery_id"] for r in rows] == ["d2", "d1"]
    assert {r["delivery_id"]: r["deliveries"] for r in rows} == {"d1": 2, "d2": 1}
    assert rows[1]["title"] == "truck-1 entered zone-7" and rows[1]["labels"] == {"geofence_id": "zone-7"}


def test_the_database_down_is_transient_and_the_delivery_lands_after(inbox, postgres):
    postgres.stop()
    try:
        with pytest.raises(TransientError, match="PostgreSQL"):
            asyncio.run(inbox.send(note("during-outage")))
    finally:
        postgres.start()
    assert asyncio.run(inbox.send(note("during-outage"))) == "kept"


def test_a_table_it_cannot_write_is_permanent(inbox, postgres_dsn):
    inbox.store.ensure_schema()
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # someone broke the table
        conn.execute(f"ALTER TABLE {inbox.store.table} ADD COLUMN extra text NOT NULL")
    with pytest.raises(PermanentError, match="23502"):
        asyncio.run(inbox.send(note("d3")))


@pytest.mark.parametrize("settings, why", [({"url": "x"}, "not an inbox setting"),
                                           ({"retention_days": 0}, "retention_days"),
                                           ({"retention_days": "7"}, "retention_days")])
def test_settings_are_validated(settings, why):
    with pytest.raises(ValidationError, match=why):
        parse_channel({"name": "i", "kind": "inbox", "tenant_id": "t", "settings": settings})


def test_the_api_shows_a_tenant_only_its_own_inbox(inbox, postgres_dsn, monkeypatch):
    from services.api import routes_inbox

    for i, tenant in enumerate(["acme", "acme", "globex"]):
        asyncio.run(inbox.send(note(f"m{i}", tenant, f"message {i}")))
    keys = {"op-key-000000000000": "*", "acme-key-0000000000": "acme", "globex-key-00000000": "globex"}
    port, started, loop = free_port(), threading.Event(), asyncio.new_event_loop()

    async def serve():
        app = web.Application(middlewares=[problem_middleware, auth_middleware(load_api_keys(json.dumps(keys), None))])
        routes_inbox.add_routes(app)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        started.set()
        return runner

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(serve(), loop).result(30)
    try:
        base = f"http://127.0.0.1:{port}/api/v1/inbox"
        status, acme = http("GET", base, key="acme-key-0000000000")
        assert status == 200 and acme["total"] == 2
        assert {m["tenant_id"] for m in acme["items"]} == {"acme"}
        assert http("GET", base, key="globex-key-00000000")[1]["total"] == 1
        assert http("GET", base, key="op-key-000000000000")[1]["total"] == 3
        assert http("GET", base + "?tenant_id=globex", key="op-key-000000000000")[1]["total"] == 1
        assert http("GET", base + "?tenant_id=globex", key="acme-key-0000000000")[0] == 403
        assert http("GET", base, key=None)[0] == 401
        assert http("GET", base + "?limit=0", key="op-key-000000000000")[0] == 400
        assert http("GET", base + "?limit=2&offset=1", key="op-key-000000000000")[1]["items"][0]["title"] == "message 1"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
