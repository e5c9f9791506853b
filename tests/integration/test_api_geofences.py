"""The HTTP API in its own process: geofence CRUD with clear 4xx, and REST evaluation whose
answers are the events that land on the topic."""

import time

import pytest

from connectors.kafka_producer import ReliableProducer
from geoflux.keys import scoped
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from streams.evaluator_records import REPLY_ATTRIBUTE, REPLY_PARTITION_ATTRIBUTE
from tests.conftest import wait_for
from tests.integration.geo_helpers import (EventCollector, http, read_to_end, start_api, start_worker, stop,
                                           wait_fence_in_effect)

pytestmark = pytest.mark.kafka

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def feature(geometry=SQUARE, **props):
    return {"type": "Feature", "geometry": geometry,
            "properties": {"name": "zone", "tenant_id": "t", **props}}


@pytest.fixture
def api(kafka_settings, tmp_path):
    port = free_port()
    proc = start_api(kafka_settings, port, tmp_path)
    worker = start_worker(kafka_settings, "0", tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        yield base
    finally:
        stop(proc)
        stop(worker)


def test_geofence_crud_and_validation(api):
    status, body = http("POST", f"{api}/api/v1/geofences", feature())
    assert status == 201 and body["properties"]["version"] == 1
    gid = body["id"]
    status, got = http("GET", f"{api}/api/v1/geofences/{gid}")
    assert status == 200 and got["geometry"]["type"] == "Polygon"
    status, body = http("PUT", f"{api}/api/v1/geofences/{gid}", feature(name="renamed"))
    assert status == 200 and body["properties"]["version"] == 2
    assert body["properties"]["name"] == "renamed"
    for i in range(3):
        assert http("POST", f"{api}/api/v1/geofences", feature(name=f"z{i}"))[0] == 201
    status, page = http("GET", f"{api}/api/v1/geofences?limit=2")
    assert status == 200 and page["total"] == 4 and len(page["features"]) == 2 and "next" in page
    status, page2 = http("GET", f"{api}{page['next']}")
    assert len(page2["features"]) == 2 and "next" not in page2
    status, body = http("DELETE", f"{api}/api/v1/geofences/{gid}")
    assert status == 200 and body["deleted"] is True
    assert http("GET", f"{api}/api/v1/geofences/{gid}")[0] == 404
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    status, problem = http("POST", f"{api}/api/v1/geofences", feature(bowtie))
    assert status == 422 and "Self-intersection" in problem["detail"]
    status, problem = http("POST", f"{api}/api/v1/geofences", b"{not json")
    assert status == 400 and "not valid JSON" in problem["detail"]
    status, problem = http("GET", f"{api}/api/v1/geofences?limit=0")
    assert status == 400


def test_rest_evaluation_returns_the_events_on_the_topic(api, kafka_settings):
    status, body = http("POST", f"{api}/api/v1/geofences", feature())
    gid = body["id"]
    wait_fence_in_effect(f"{api}/api/v1", gid, 0.5, 0.5)
    events = EventCollector(kafka_settings, AvroCodec())

    def ours():
        return {r["event_id"] for r in events.snapshot() if not r["entity_id"].startswith("probe-")}

    try:
        t0 = int(time.time() * 1000)
        status, res = http("POST", f"{api}/api/v1/geoevent/evaluate",
                           {"entity_id": "car", "lon": 0.5, "lat": 0.5, "timestamp": t0,
                            "tenant_id": "t"})
        assert status == 200, res
        assert res["inside"] == [gid] and [e["event_type"] for e in res["events"]] == ["ENTER"]
        status, batch = http("POST", f"{api}/api/v1/geoevent/evaluate/batch", {"locations": [
            {"entity_id": "car", "lon": 5, "lat": 5, "timestamp": t0 + 1000, "tenant_id": "t"},
            {"entity_id": "bus", "lon": 0.2, "lat": 0.2, "timestamp": "2026-01-01T00:00:00Z",
             "tenant_id": "t"}]})
        assert status == 200
        assert [[e["event_type"] for e in r["events"]] for r in batch["results"]] == [["EXIT"], ["ENTER"]]
        returned = {e["event_id"] for e in res["events"]} | {
            e["event_id"] for r in batch["results"] for e in r["events"]}
        wait_for(lambda: ours() >= returned, 30, what="returned events on the topic")
        assert ours() == returned
        status, problem = http("POST", f"{api}/api/v1/geoevent/evaluate",
                               {"entity_id": "car", "lon": 0.5, "lat": 0.5,
                                "timestamp": t0 - 3_600_000, "tenant_id": "t"})
        assert status == 422 and "late" in problem["detail"] and "dead-lettered" in problem["detail"]
        too_many = {"locations": [{"entity_id": "x", "lon": 0, "lat": 0, "timestamp": 1}] * 1001}
        assert http("POST", f"{api}/api/v1/geoevent/evaluate/batch", too_many)[0] == 413
        status, problem = http("POST", f"{api}/api/v1/geoevent/evaluate",
                               {"entity_id": "car", "lon": 500, "lat": 0, "timestamp": 1})
        assert status == 422 and "lon 500" in problem["detail"]
    finally:
        events.close()


def test_answers_go_to_the_partition_the_api_asks_for_and_a_bad_ask_is_ignored(api, kafka_settings):
    """One API process: every answer on one partition of the evaluations topic (12 answers by
    their request id's hash would all share one of 3 partitions once in 177,000 runs). Asks
    written straight to the locations topic, out of range or not numbers, are answered by the
    request id's partition, once each, with nothing dead-lettered."""
    t0 = int(time.time() * 1000)
    for i in range(12):
        status, res = http("POST", f"{api}/api/v1/geoevent/evaluate",
                           {"entity_id": f"c{i}", "lon": 0.5, "lat": 0.5, "timestamp": t0, "tenant_id": "t"})
        assert status == 200, res
    answers = topic("geo.evaluations", kafka_settings)
    assert len({m.partition() for m in read_to_end(kafka_settings, answers)}) == 1

    codec, locations = AvroCodec(), topic("geo.locations", kafka_settings)
    asks = {"r-big": "999", "r-neg": "-1", "r-word": "x", "r-digit": "\u0661", "r-empty": "", "r-two": "2"}
    producer = ReliableProducer(kafka_settings)
    for rid, ask in asks.items():
        rec = {"entity_id": rid, "tenant_id": "t", "lon": 0.5, "lat": 0.5, "ts_ms": t0, "produced_ms": t0,
               "attributes": {REPLY_ATTRIBUTE: rid, REPLY_PARTITION_ATTRIBUTE: ask}}
        producer.send(locations, codec.encode(locations, "LocationUpdate", rec), key=scoped("t", rid))
    assert producer.flush_or_raise() == len(asks)

    def answered():
        return [m for m in read_to_end(kafka_settings, answers) if m.key().decode() in asks]
    wait_for(lambda: len(answered()) >= len(asks), 60, what="answers to the direct asks")
    got = answered()
    assert sorted(m.key().decode() for m in got) == sorted(asks)  # each once
    assert [m.partition() for m in got if m.key() == b"r-two"] == [2]
    assert read_to_end(kafka_settings, topic("geo.locations.dlq", kafka_settings)) == []
