"""`geoflux up` runs the whole product, embedded: its own PostgreSQL + PostGIS and Apicurio
Registry in its state directory next to the broker, so the audit trail, the PostGIS job tier
and registry mode are on without any setting; each named with where it runs, in the startup
lines and /readyz. A second `up` on the same state directory finds everything where it was:
the registry's schema ids survive, so every record written before still reads."""

import json
import math
import time
import urllib.request

import pytest

from tests.conftest import wait_for
from tests.integration.geo_helpers import http
from tests.integration.up_helpers import UpStack

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def big_polygon(n: int = 6000) -> dict:
    ring = [[13.44 + 0.01 * math.cos(2 * math.pi * k / n), 52.53 + 0.006 * math.sin(2 * math.pi * k / n)]
            for k in range(n)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = UpStack(tmp_path_factory.mktemp("up-embedded"), "--no-demo")
    try:
        s.first_start_s = s.start().wait_ready(600)
        yield s
    finally:
        s.close()


def test_every_part_runs_embedded_and_says_where(stack):
    out = stack.output()
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln and not ln[0].isdigit()}
    assert f"127.0.0.1:{stack.kafka_port}" in lines["kafka"]
    assert str(stack.pg_dir) in lines["postgres"] or "/var/lib/geoflux/postgres" in lines["postgres"]
    registry_url = lines["registry"].split()[1]
    assert registry_url.endswith("/apis/ccompat/v7") and str(stack.dir / "registry") in lines["registry"]
    assert "audit" in lines["workers"] and "jobs" in lines["workers"]
    assert "off" not in out  # nothing had to be turned off
    status, ready = http("GET", stack.base + "/readyz", key=None)
    assert status == 200, ready
    checks = ready["checks"]
    assert {name: c["ok"] for name, c in checks.items()} == {"kafka": True, "registry": True, "database": True}
    assert checks["registry"]["target"] == registry_url
    assert checks["database"]["target"].startswith("127.0.0.1:")  # no user name in it
    parts = {p["name"]: p for p in stack.status()["parts"]}
    assert all(parts[n]["state"] == "running" and parts[n]["owned"] for n in ("kafka", "postgres", "registry"))


def test_registry_mode_audit_trail_and_postgis_tier_are_on(stack):
    operator = stack.keys["operator"]
    registry_url = next(ln.split()[1] for ln in stack.output().splitlines() if ln.startswith("registry"))
    # a geofence written through the API: its record carries the registry's schema id
    fence = {"type": "Feature", "id": "up-square", "geometry": {"type": "Polygon", "coordinates": [
        [[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1], [13.0, 52.0]]]},
        "properties": {"name": "up square", "tenant_id": "demo"}}
    assert http("POST", stack.base + "/api/v1/geofences", fence, key=operator)[0] == 201
    with urllib.request.urlopen(registry_url + "/subjects", timeout=10) as resp:
        assert "geo.geofences-value" in json.loads(resp.read())
    # an evaluation through the durable stream: the audit worker writes its event to PostgreSQL
    status, body = http("POST", stack.base + "/api/v1/geoevent/evaluate", {
        "entity_id": "truck-1", "tenant_id": "demo", "lon": 13.05, "lat": 52.05,
        "timestamp": int(time.time() * 1000)}, key=operator)
    assert status == 200 and body["events"], body
    wait_for(lambda: http("GET", stack.base + "/api/v1/audit/events?entity_id=truck-1",
                          key=operator)[1].get("items"), 120, interval_s=1, what="the event in the audit trail")
    # a job too large for the in-process tier runs in the embedded PostGIS
    status, job = http("POST", stack.base + "/processes/area-length/execution",
                       {"inputs": {"geometry": big_polygon()}}, key=stack.keys["tenant demo"],
                       headers={"Prefer": "respond-async"})
    assert status == 201, job
    done = wait_for(lambda: (lambda s: s if s.get("status") in ("successful", "failed") else None)(
        http("GET", f"{stack.base}/jobs/{job['jobID']}", key=operator)[1]), 180, interval_s=1,
        what="the PostGIS job")
    assert done["status"] == "successful" and done["tier"] == "postgis", done


def test_a_second_up_finds_everything_where_it_was(stack):
    stack.stop()
    assert not (stack.dir / "stack.json").exists()
    stack.warm_start_s = stack.start().wait_ready(300)
    print(f"\nfirst start {stack.first_start_s:.1f}s, warm start {stack.warm_start_s:.1f}s")
    operator = stack.keys["operator"]
    # records written before the restart decode: the registry kept its schema ids
    got = http("GET", stack.base + "/api/v1/geofences/up-square", key=operator)
    assert got[0] == 200 and got[1]["properties"]["name"] == "up square"
    assert http("GET", stack.base + "/api/v1/audit/events?entity_id=truck-1", key=operator)[1]["items"]
    assert http("GET", stack.base + "/readyz", key=None)[0] == 200
