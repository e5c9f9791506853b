"""Ids are unique only within a tenant (issue 14, defect 0): two tenants, each with a fence
`depot` on the same square and an entity `truck-1`, evaluated at the same instant. Each gets
its own ENTER of its own fence; neither is told "duplicate" or shown the other's fence; the
console's entity view and the event stream keep them apart."""

import time

import pytest

from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import (TENANT_KEYS, EventCollector, http, start_api, start_worker,
                                           stop, wait_fence_in_effect)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
ACME, GLOBEX = TENANT_KEYS["acme"], TENANT_KEYS["globex"]


def test_same_entity_and_fence_ids_in_two_tenants_stay_apart(kafka_settings, tmp_path):
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path)
    worker = start_worker(kafka_settings, "0", tmp_path)
    events = EventCollector(kafka_settings, AvroCodec())
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
        for key, name in ((ACME, "acme depot"), (GLOBEX, "globex depot")):
            feature = {"type": "Feature", "id": "depot", "geometry": SQUARE, "properties": {"name": name}}
            status, body = http("POST", f"{base}/api/v1/geofences", feature, key=key)
            assert status == 201, body
        for key, tenant in ((ACME, "acme"), (GLOBEX, "globex")):
            wait_fence_in_effect(f"{base}/api/v1", "depot", 0.5, 0.5, tenant=tenant, key=key)
        ts = int(time.time() * 1000)
        answers = {}
        for key, tenant in ((ACME, "acme"), (GLOBEX, "globex")):
            loc = {"entity_id": "truck-1", "lon": 0.5, "lat": 0.5, "timestamp": ts}
            status, answers[tenant] = http("POST", f"{base}/api/v1/geoevent/evaluate", loc, key=key)
            assert status == 200, answers[tenant]
        for tenant, answer in answers.items():
            assert answer["outcome"] == "applied", (tenant, answer)  # not "duplicate"
            assert answer["inside"] == ["depot"], (tenant, answer)
            assert [(e["event_type"], e["geofence_id"]) for e in answer["events"]] == [("ENTER", "depot")]
        assert answers["acme"]["events"][0]["event_id"] != answers["globex"]["events"][0]["event_id"]
        def on_topic():  # the probes' events left out
            return sorted((e["tenant_id"], e["entity_id"], e["geofence_id"], e["event_type"])
                          for e in events.snapshot() if not e["entity_id"].startswith("probe-"))

        wait_for(lambda: len(on_topic()) >= 2, 30, what="both ENTERs on the topic")
        assert on_topic() == [("acme", "truck-1", "depot", "ENTER"), ("globex", "truck-1", "depot", "ENTER")]
        # the console's map: each tenant sees its own truck-1 only; the operator sees both
        def trucks(key=None):
            items = http("GET", f"{base}/api/v1/entities", **({"key": key} if key else {}))[1]["items"]
            return [(i["tenant_id"], i["entity_id"]) for i in items if not i["entity_id"].startswith("probe-")]

        wait_for(lambda: len(trucks()) == 2, 30, what="both trucks in the entity view")
        for key, tenant in ((ACME, "acme"), (GLOBEX, "globex")):
            assert trucks(key) == [(tenant, "truck-1")]
        # one tenant's move never touches the other's state
        loc = {"entity_id": "truck-1", "lon": 5, "lat": 5, "timestamp": ts + 1000}
        status, moved = http("POST", f"{base}/api/v1/geoevent/evaluate", loc, key=ACME)
        assert status == 200 and [e["event_type"] for e in moved["events"]] == ["EXIT"]
        status, still = http("POST", f"{base}/api/v1/geoevent/evaluate",
                             {"entity_id": "truck-1", "lon": 0.5, "lat": 0.5, "timestamp": ts + 1000},
                             key=GLOBEX)
        assert status == 200 and still["events"] == [] and still["inside"] == ["depot"], still
    finally:
        events.close()
        stop(worker)
        stop(api)
