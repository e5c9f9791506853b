"""GET /api/v1/audit/events over a real PostgreSQL, and retention by dropping partitions.

Rows are written with the sink's own writer (AuditStore.write); the sink's path from Kafka is
tested in test_audit_sink.py.
"""

import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlencode

import psycopg
import pytest

from connectors.audit_rows import to_row
from connectors.audit_store import AuditStore
from geoflux.errors import TransientError
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, stop

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def event(i: int, tenant: str, entity: str, fence: str, lon: float, lat: float) -> dict:
    e = geofence_event(i, tenant=tenant, entity=entity, geofence=fence)
    e.update(lon=lon, lat=lat, ts_ms=T0 + i * 1000)
    return e


@pytest.fixture
def audit_table(postgres_dsn):
    table = f"audit_{uuid.uuid4().hex[:8]}"
    store = AuditStore(postgres_dsn, table)
    rows = [to_row("geofence_event", event(i, "acme", "truck-1", "zone-1", 13.4, 52.5), "t", 0, i)
            for i in range(10)]
    rows += [to_row("geofence_event", event(i, "globex", "truck-2", "zone-2", 2.35, 48.85), "t", 1, i)
             for i in range(10)]
    job = {"job_id": "j1", "tenant_id": "acme", "process_id": "buffer", "status": "successful",
           "progress": 100, "message": None, "tier": None, "attempt": 1, "created_ms": T0,
           "started_ms": None, "finished_ms": None, "updated_ms": T0 + 500, "idempotency_key": "",
           "priority": 5}
    rows.append(to_row("job_status", job, "t", 2, 0))
    assert store.write(rows) == 21
    assert store.write(rows) == 0  # idempotent: the same batch again adds nothing
    store.close()
    return table


def test_audit_events_api(kafka_settings, postgres, postgres_dsn, audit_table, tmp_path):
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path, GEOFLUX_PG_DSN=postgres_dsn,
                    GEOFLUX_AUDIT_TABLE=audit_table)
    base = f"http://127.0.0.1:{port}/api/v1/audit/events"

    def get(key=None, **params):
        kw = {} if key is None else {"key": key}
        return http("GET", f"{base}?{urlencode(params)}", **kw)

    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="the API")
        # time range: from inclusive, to exclusive, as epoch ms or ISO 8601
        status, body = get(**{"from": T0 + 2000, "to": T0 + 5000})
        assert status == 200
        assert sorted(r["ts_ms"] for r in body["items"]) == [T0 + 2000, T0 + 2000, T0 + 3000,
                                                             T0 + 3000, T0 + 4000, T0 + 4000]
        _, iso = get(**{"from": "2025-01-01T00:00:02Z", "to": "2025-01-01T00:00:05+00:00"})
        assert [r["id"] for r in iso["items"]] == [r["id"] for r in body["items"]]
        # subject, kind and place
        _, by_entity = get(entity_id="truck-1")
        assert len(by_entity["items"]) == 10 and {r["entity_id"] for r in by_entity["items"]} == {"truck-1"}
        _, by_fence = get(geofence_id="zone-2", type="ENTER")
        assert len(by_fence["items"]) == 10 and {r["tenant_id"] for r in by_fence["items"]} == {"globex"}
        _, berlin = get(bbox="13,52,14,53")
        assert {(r["entity_id"], r["lon"], r["lat"]) for r in berlin["items"]} == {("truck-1", 13.4, 52.5)}
        assert len(berlin["items"]) == 10
        _, nowhere = get(bbox="-10,-10,-9,-9")
        assert nowhere["items"] == []
        _, jobs = get(kind="job_status")
        assert [r["id"].split(":")[0] for r in jobs["items"]] == ["j1"]
        assert jobs["items"][0]["payload"]["process_id"] == "buffer"
        _, page = get(limit=4, offset=4)
        assert len(page["items"]) == 4 and page["next_offset"] == 8
        # bad parameters: 400 with the reason
        for params, reason in (({"from": "soon"}, "from"), ({"bbox": "1,2"}, "bbox"),
                               ({"limit": 100000}, "limit"), ({"kind": "everything"}, "kind")):
            status, problem = get(**params)
            assert status == 400 and reason in problem["detail"], (params, problem)
        # tenants: a tenant key sees its own rows only, asking for another is 403, no key 401
        status, mine = get(key=TENANT_KEYS["acme"])
        assert status == 200 and len(mine["items"]) == 11
        assert {r["tenant_id"] for r in mine["items"]} == {"acme"}
        _, mine_in_paris = get(key=TENANT_KEYS["acme"], bbox="2,48,3,49")
        assert mine_in_paris["items"] == []
        assert get(key=TENANT_KEYS["acme"], tenant_id="globex")[0] == 403
        assert get(key=TENANT_KEYS["acme"], tenant_id="acme")[0] == 200
        assert http("GET", base, key=None)[0] == 401
        _, op = get(tenant_id="globex")
        assert len(op["items"]) == 10
        # PostgreSQL down: 503 with a reason, and back to 200 when it returns
        postgres.stop()
        try:
            status, problem = get(entity_id="truck-1")
            assert status == 503 and "PostgreSQL" in problem["detail"]
        finally:
            postgres.start()
        assert wait_for(lambda: get(entity_id="truck-1")[0] == 200, 30, interval_s=0.2,
                        what="the API answering again")
    finally:
        stop(api)


def _drop(dsn: str, table: str, *args: str) -> str:
    env = dict(os.environ, GEOFLUX_PG_DSN=dsn, GEOFLUX_AUDIT_TABLE=table)
    out = subprocess.run([sys.executable, "-m", "services.cli", "audit", "drop-before", *args],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _row_at(day: date, n: int) -> object:
    ms = int(datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc).timestamp() * 1000)
    e = geofence_event(n, entity=f"e{n}")
    e["ts_ms"] = ms
    return to_row("geofence_event", e, "t", 0, n)


def test_retention_drops_whole_old_partitions_and_keeps_newer(postgres_dsn):
    table = f"audit_{uuid.uuid4().hex[:8]}"
    store = AuditStore(postgres_dsn, table)
    today = datetime.now(timezone.utc).date()
    days = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3), today - timedelta(days=40),
            today - timedelta(days=1)]
    assert store.write([_row_at(d, n) for n, d in enumerate(days)]) == 5

    out = _drop(postgres_dsn, table, "2024-01-03")
    assert f"dropped {table}_p20240101" in out and "dropped 2 partition(s)" in out
    assert store.partitions() == sorted(f"{table}_p{d:%Y%m%d}" for d in days[2:])

    _drop(postgres_dsn, table, "--older-than-days", "30")
    assert store.partitions() == [f"{table}_p{days[-1]:%Y%m%d}"]
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1
    assert "dropped 0 partition(s)" in _drop(postgres_dsn, table)  # default: 30 days kept

    # a sink that cached a day retention dropped recreates it on the retry
    with pytest.raises(TransientError):
        store.write([_row_at(date(2024, 1, 1), 99)])
    assert store.write([_row_at(date(2024, 1, 1), 99)]) == 1
    store.close()
