"""The stream-table join (issue 19, item 2a): an entity's attributes, written through the API
onto the compacted geo.entities, ride on its geofence events from the evaluator; an alert rule
filters and templates on them ("a vehicle of class hazmat ENTERs a school zone")."""

import time

import pytest

from schemas.codec import AvroCodec
from services.control.alert_config import AlertConfig
from services.devstack.local_process import free_port, port_is_open
from services.api.routes_entities import parse_attributes
from tests.conftest import wait_for
from tests.integration.geo_helpers import (TENANT_KEYS, EventCollector, http, lag_is_zero,
                                           publish_locations, start_api, start_cli, start_worker, stop)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SCHOOL = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
ACME = TENANT_KEYS["acme"]


def test_attributes_are_joined_onto_events_and_rules_filter_on_them(kafka_settings, tmp_path):
    port, codec = free_port(), AvroCodec()
    base = f"http://127.0.0.1:{port}"
    config = AlertConfig(kafka_settings, codec).start()
    config.rules.put({"rule_id": "hazmat-at-school", "tenant_id": "acme", "severity": "critical",
                      "match": {"event_type": ["ENTER"], "geofence_id": ["school"],
                                "attributes.class": ["hazmat"]},
                      "channels": ["ops"], "title": "{attributes.class} {entity_id} at {geofence_id}"})
    config.close()
    procs = [start_api(kafka_settings, port, tmp_path), start_worker(kafka_settings, "0", tmp_path),
             start_cli(kafka_settings, ["worker", "alert-router"], "router", tmp_path)]
    events = EventCollector(kafka_settings, codec)
    candidates = EventCollector(kafka_settings, codec, "alerts.candidates", "Alert")
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 120, what="API")
        feature = {"type": "Feature", "id": "school", "geometry": SCHOOL, "properties": {"name": "school"}}
        assert http("POST", f"{base}/api/v1/geofences", feature, key=ACME)[0] == 201
        for entity, cls in (("truck-1", "hazmat"), ("car-2", "car")):
            status, rec = http("PUT", f"{base}/api/v1/entities/{entity}/attributes",
                               {"attributes": {"class": cls, "plate": f"B-{entity}"}}, key=ACME)
            assert status == 200 and rec["attributes"]["class"] == cls, rec
        status, problem = http("PUT", f"{base}/api/v1/entities/x/attributes", {"attributes": {"a": [1]}}, key=ACME)
        assert status == 422 and "string or a number" in problem["detail"]
        assert http("GET", f"{base}/api/v1/entities/truck-1/attributes", key=TENANT_KEYS["globex"])[0] == 404
        # events carry what the evaluator knew when it evaluated: let it read the attributes first
        wait_for(lambda: lag_is_zero(kafka_settings, logical="geo.entities"), 60,
                 what="the evaluator has read geo.entities")
        now = int(time.time() * 1000)
        publish_locations(kafka_settings, codec, [("truck-1", 0.5, 0.5, now), ("car-2", 0.5, 0.5, now),
                                                  ("bike-3", 0.5, 0.5, now)], tenant="acme")
        wait_for(lambda: len(events.snapshot()) == 3, 60, what="three ENTERs")
        by_entity = {e["entity_id"]: e["attributes"] for e in events.snapshot()}
        assert by_entity == {"truck-1": {"class": "hazmat", "plate": "B-truck-1"},
                             "car-2": {"class": "car", "plate": "B-car-2"}, "bike-3": {}}
        wait_for(lambda: lag_is_zero(kafka_settings, "geoflux-alert-router", "geo.geofence-events"), 60,
                 what="the router has read all three events")
        [alert] = candidates.snapshot()  # only the hazmat one matches
        assert alert["title"] == "hazmat truck-1 at school" and alert["labels"]["entity_id"] == "truck-1"
        # forgetting the attributes: later events carry none
        assert http("DELETE", f"{base}/api/v1/entities/truck-1/attributes", key=ACME)[0] == 200
        wait_for(lambda: http("GET", f"{base}/api/v1/entities/truck-1/attributes", key=ACME)[0] == 404, 30,
                 what="the attributes gone")
        publish_locations(kafka_settings, codec, [("truck-1", 5, 5, now + 1000)], tenant="acme")
        wait_for(lambda: any(e["event_type"] == "EXIT" for e in events.snapshot()), 60, what="the EXIT")
        [exit_] = [e for e in events.snapshot() if e["event_type"] == "EXIT"]
        assert exit_["attributes"] == {}
    finally:
        events.close()
        candidates.close()
        for p in procs:
            stop(p)


@pytest.mark.parametrize("body, reason", [
    ({}, "expected"), ({"attributes": []}, "expected"),
    ({"attributes": {"bad name": "x"}}, "attribute name"),
    ({"attributes": {"a": True}}, "string or a number"),
    ({"attributes": {"a": "x" * 257}}, "at most 256"),
    ({"attributes": {f"a{i}": 1 for i in range(51)}}, "at most 50"),
])
def test_attribute_bodies_are_refused_with_the_reason(body, reason):
    with pytest.raises(Exception, match=reason):
        parse_attributes(body)


def test_attribute_values_become_strings():
    assert parse_attributes({"attributes": {"weight_t": 7.5, "axles": 3}}) == {"weight_t": "7.5", "axles": "3"}
