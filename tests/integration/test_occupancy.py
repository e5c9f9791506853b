"""Who is inside geofence G now (issue 16, the seed's queryable state): answered from the
evaluator's own state, agreeing with the events on the topic, tenant-scoped, and still right
after the API restarts (its view resumes from the offsets it stored)."""

import time

import pytest

from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import (TENANT_KEYS, EventCollector, http, publish_locations,
                                           start_api, start_worker, stop)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
ACME, GLOBEX = TENANT_KEYS["acme"], TENANT_KEYS["globex"]


def occupants(base, gid, key):
    status, body = http("GET", f"{base}/api/v1/geofences/{gid}/occupants", key=key)
    return status, sorted(i["entity_id"] for i in body.get("items", []))


def test_occupants_follow_the_events_per_tenant_and_survive_an_api_restart(kafka_settings, tmp_path):
    port, codec = free_port(), AvroCodec()
    base = f"http://127.0.0.1:{port}"
    api = start_api(kafka_settings, port, tmp_path)
    worker = start_worker(kafka_settings, "0", tmp_path)
    events = EventCollector(kafka_settings, codec)
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 120, what="API")
        for key in (ACME, GLOBEX):
            feature = {"type": "Feature", "id": "depot", "geometry": SQUARE, "properties": {"name": "depot"}}
            assert http("POST", f"{base}/api/v1/geofences", feature, key=key)[0] == 201
        now = int(time.time() * 1000)
        publish_locations(kafka_settings, codec, [(f"a{i}", 0.5, 0.5, now) for i in range(5)], tenant="acme")
        publish_locations(kafka_settings, codec, [("a9", 5, 5, now), ("a0", 0.5, 0.5, now)], tenant="globex")
        wait_for(lambda: len(events.snapshot()) == 6, 60, what="six ENTERs")
        wait_for(lambda: occupants(base, "depot", ACME) == (200, ["a0", "a1", "a2", "a3", "a4"]), 30,
                 what="acme's occupants")
        # the same ids, the other tenant's (its events may be applied a moment later)
        wait_for(lambda: occupants(base, "depot", GLOBEX) == (200, ["a0"]), 30, what="globex's occupants")
        status, fences = http("GET", f"{base}/api/v1/entities/a0/geofences", key=ACME)
        assert status == 200 and [f["geofence_id"] for f in fences["items"]] == ["depot"]
        entered = {e["entity_id"]: e["ts_ms"] for e in events.snapshot() if e["tenant_id"] == "acme"}
        assert fences["items"][0]["since"] == entered["a0"]  # the ENTER's own time
        assert http("GET", f"{base}/api/v1/entities/a9/geofences", key=GLOBEX)[1]["items"] == []
        # leaving: the EXIT is on the topic, then the view no longer lists the entity
        publish_locations(kafka_settings, codec, [("a1", 5, 5, now + 1000), ("a2", 5, 5, now + 1000)],
                          tenant="acme")
        wait_for(lambda: occupants(base, "depot", ACME)[1] == ["a0", "a3", "a4"], 30, what="two EXITs applied")
        # the view follows the changelog, the collector the events topic: both written in one
        # transaction, read by two consumers, so the collector may be a fetch behind the view
        wait_for(lambda: sum(e["event_type"] == "EXIT" for e in events.snapshot()) == 2, 30,
                 what="the two EXITs on the events topic")
        assert sum(e["event_type"] == "EXIT" for e in events.snapshot()) == 2
        # an operator must say whose depot; a tenant cannot see another's
        assert http("GET", f"{base}/api/v1/geofences/depot/occupants")[0] == 422
        status, body = http("GET", f"{base}/api/v1/geofences/depot/occupants?tenant_id=globex")
        assert status == 200 and [i["entity_id"] for i in body["items"]] == ["a0"]
        assert http("GET", f"{base}/api/v1/geofences/nope/occupants", key=ACME)[0] == 404
        # the API restarts: its view resumes from what it stored, and keeps following
        stop(api)
        api = start_api(kafka_settings, port, tmp_path)
        wait_for(lambda: port_is_open("127.0.0.1", port), 120, what="API again")
        wait_for(lambda: occupants(base, "depot", ACME) == (200, ["a0", "a3", "a4"]), 30,
                 what="the same occupants after a restart")
        publish_locations(kafka_settings, codec, [("a1", 0.5, 0.5, now + 2000)], tenant="acme")
        wait_for(lambda: occupants(base, "depot", ACME)[1] == ["a0", "a1", "a3", "a4"], 30,
                 what="a new ENTER after the restart")
    finally:
        events.close()
        stop(worker)
        stop(api)
