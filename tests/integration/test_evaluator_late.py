"""Late updates through the real evaluator and the REST API: placed in order with the events
they imply, or dead-lettered with their own class and reason (422 to the REST caller)."""

import time

import pytest

from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import (EventCollector, http, read_to_end, start_api, start_worker,
                                           stop, wait_fence_in_effect)

pytestmark = pytest.mark.kafka

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def test_late_updates_are_placed_or_dead_lettered_with_their_class(kafka_settings, tmp_path):
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path)
    worker = start_worker(kafka_settings, "0", tmp_path, GEOFLUX_GEOFENCE_HISTORY_MAX_POINTS="4")
    dlq = EventCollector(kafka_settings, AvroCodec(), "geo.locations.dlq", "DlqRecord")
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        status, fence = http("POST", f"{base}/geofences", {
            "type": "Feature", "geometry": SQUARE, "properties": {"name": "yard", "tenant_id": "t"}})
        assert status == 201, fence
        t0 = int(time.time() * 1000)

        def evaluate(entity, lon, ts):
            return http("POST", f"{base}/geoevent/evaluate", {
                "entity_id": entity, "lon": lon, "lat": 0.5, "timestamp": ts, "tenant_id": "t"})

        def events(res):
            return [(e["event_type"], e["ts_ms"]) for e in res["events"]]

        wait_fence_in_effect(base, fence["id"], 0.5, 0.5)

        # placed: out of the yard for a moment between two reports inside it
        for ts in (t0, t0 + 1000, t0 + 2000):
            assert evaluate("placed", 0.5, ts)[0] == 200
        status, res = evaluate("placed", 5, t0 + 1500)
        assert status == 200 and res["outcome"] == "applied", res
        assert events(res) == [("EXIT", t0 + 1500), ("ENTER", t0 + 2000)]
        # an excursion behind a later EXIT cannot be appended in order: late_excursion
        for ts, lon in ((t0, 0.5), (t0 + 1000, 0.5), (t0 + 3000, 5)):
            assert evaluate("behind", lon, ts)[0] == 200
        status, problem = evaluate("behind", 5, t0 + 500)
        assert status == 422 and "shows an excursion (EXIT then ENTER)" in problem["detail"]
        assert "dead-lettered" in problem["detail"]
        # eight reports, four kept: one older than the kept four is history_exceeded
        for k in range(8):
            assert evaluate("fast", 0.5, t0 + k * 100)[0] == 200
        status, problem = evaluate("fast", 5, t0 + 250)
        assert status == 422 and "at most 4 are kept" in problem["detail"], problem

        wait_for(lambda: len(dlq.snapshot()) >= 2, 30, what="two DLQ records")
        by_class = {r["error_class"]: r for r in dlq.snapshot()}
        assert sorted(by_class) == ["history_exceeded", "late_excursion"]
        assert "GEOFLUX_GEOFENCE_HISTORY_MAX_POINTS" in by_class["history_exceeded"]["error_message"]
        assert by_class["late_excursion"]["original_value"]
    finally:
        stop(worker)
        stop(api)
        dlq.close()


def test_a_late_update_is_placed_in_a_history_restored_from_the_changelog_alone(kafka_settings, tmp_path):
    """The window's older points travel as chunk records beside the entity's record: a worker
    with an empty store restores them and places a late update among them."""
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path)
    worker = start_worker(kafka_settings, "0", tmp_path, GEOFLUX_STREAM_DATA_DIR=str(tmp_path / "a"))
    base = f"http://127.0.0.1:{port}/api/v1"

    def evaluate(entity, lon, ts):
        return http("POST", f"{base}/geoevent/evaluate", {
            "entity_id": entity, "lon": lon, "lat": 0.5, "timestamp": ts, "tenant_id": "t"})

    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        status, fence = http("POST", f"{base}/geofences", {
            "type": "Feature", "geometry": SQUARE, "properties": {"name": "yard", "tenant_id": "t"}})
        assert status == 201, fence
        wait_fence_in_effect(base, fence["id"], 0.5, 0.5)
        t0 = int(time.time() * 1000)
        for k in range(13):  # 12 s inside the yard: two chunks and more before the newest
            assert evaluate("restored", 0.5, t0 + k * 1000)[0] == 200
        stop(worker)
        chunks = [m for m in read_to_end(kafka_settings, topic("geo.evaluator-state", kafka_settings))
                  if m.key().startswith(b"\x00h") and m.key().endswith(b"/t/restored") and m.value()]
        assert len({m.key() for m in chunks}) >= 2, [m.key() for m in chunks]

        worker = start_worker(kafka_settings, "0", tmp_path, GEOFLUX_STREAM_DATA_DIR=str(tmp_path / "b"))
        wait_for(lambda: evaluate("probe", 0.5, t0)[0] == 200, 90, what="the restored worker answering")
        status, res = evaluate("restored", 5, t0 + 1500)
        assert status == 200 and res["outcome"] == "applied", res
        assert [(e["event_type"], e["ts_ms"]) for e in res["events"]] == [("EXIT", t0 + 1500), ("ENTER", t0 + 2000)]
    finally:
        stop(worker)
        stop(api)
