"""The evaluator in its own process against the real broker: enter, exit, dwell, edits, deletes,
late and bad input to the DLQ."""

import time

import pytest

from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.geo_helpers import (EventCollector, publish_fences, publish_locations,
                                           start_worker, stop)

pytestmark = pytest.mark.kafka

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def fence(gid, geometry=SQUARE, **props):
    return {"type": "Feature", "id": gid, "geometry": geometry,
            "properties": {"name": gid, "tenant_id": "t", **props}}


def kinds(collector, entity=None):
    return [(r["event_type"], r["geofence_id"], r["entity_id"]) for r in collector.snapshot()
            if entity is None or r["entity_id"] == entity]


def test_enter_exit_dwell_edit_delete_and_dlq(kafka_settings, tmp_path):
    codec = AvroCodec()
    registry = publish_fences(kafka_settings, [fence("A"), fence("D", dwell_seconds=1.5)], codec)
    events = EventCollector(kafka_settings, codec)
    dlq = EventCollector(kafka_settings, codec, "geo.locations.dlq", "DlqRecord")
    worker = start_worker(kafka_settings, "0", tmp_path)
    try:
        now = int(time.time() * 1000)
        publish_locations(kafka_settings, codec, [("e1", 0.5, 0.5, now), ("e1", 2, 2, now + 1000),
                                                  ("e2", 0.5, 0.5, now)])
        wait_for(lambda: len(events.snapshot()) >= 5, 60, what="ENTER/EXIT events")
        # e2 stays silent inside D: DWELL fires on the timer, about 1.5 s after its ENTER
        wait_for(lambda: ("DWELL", "D", "e2") in kinds(events), 30, what="DWELL by timer")
        assert sorted(kinds(events, "e1")) == sorted([("ENTER", "A", "e1"), ("ENTER", "D", "e1"),
                                                      ("EXIT", "A", "e1"), ("EXIT", "D", "e1")])
        # shrink A away from e2: EXIT with the new version; delete D: EXIT for e2
        registry.put(fence("A", {"type": "Polygon", "coordinates": [
            [[0, 0], [0.1, 0], [0.1, 0.1], [0, 0.1], [0, 0]]]}), "A")
        registry.delete("D")
        wait_for(lambda: ("EXIT", "D", "e2") in kinds(events) and ("EXIT", "A", "e2") in kinds(events),
                 30, what="EXITs after edit and delete")
        by_kind = {(r["event_type"], r["geofence_id"], r["entity_id"]): r for r in events.snapshot()}
        assert by_kind[("EXIT", "A", "e2")]["geofence_version"] == 2
        assert by_kind[("EXIT", "D", "e2")]["source"].startswith("fence-deleted:D")
        # late beyond the allowed lateness, and undecodable bytes: both dead-lettered with reasons
        publish_locations(kafka_settings, codec, [("e1", 0.5, 0.5, now - 3_600_000)])
        from connectors.kafka_producer import ReliableProducer
        from schemas.catalogue import topic
        p = ReliableProducer(kafka_settings)
        p.send(topic("geo.locations", kafka_settings), b"not avro", key="e9")
        p.flush_or_raise()
        wait_for(lambda: len(dlq.snapshot()) >= 2, 30, what="two DLQ records")
        classes = sorted(r["error_class"] for r in dlq.snapshot())
        assert classes == ["late", "undecodable"]
        late = next(r for r in dlq.snapshot() if r["error_class"] == "late")
        assert "behind entity e1" in late["error_message"] and late["original_value"]
        assert len(events.unique_ids()) == len(events.snapshot())  # no duplicates
    finally:
        stop(worker)
        events.close()
        dlq.close()
        registry.close()


def test_pending_dwell_survives_a_sigkill(kafka_settings, tmp_path):
    """ENTER committed, worker killed before the dwell is due: the restarted worker restores the
    timer from the changelog and fires DWELL once, on time, for a silent entity."""
    from tests.integration.geo_helpers import kill, lag_is_zero

    codec = AvroCodec()
    registry = publish_fences(kafka_settings, [fence("D", dwell_seconds=8)], codec)
    events = EventCollector(kafka_settings, codec)
    worker = start_worker(kafka_settings, "0", tmp_path)
    try:
        # the worker is up and evaluating before the clock of the test's dwell starts
        publish_locations(kafka_settings, codec, [("warm-up", 5, 5, int(time.time() * 1000))])
        wait_for(lambda: lag_is_zero(kafka_settings), 60, what="evaluator running")
        t0 = int(time.time() * 1000)
        publish_locations(kafka_settings, codec, [("quiet", 0.5, 0.5, t0)])
        wait_for(lambda: ("ENTER", "D", "quiet") in kinds(events), 60, what="ENTER")
        kill(worker)
        assert ("DWELL", "D", "quiet") not in kinds(events)
        worker = start_worker(kafka_settings, "0", tmp_path)
        wait_for(lambda: ("DWELL", "D", "quiet") in kinds(events), 60, what="DWELL after restart")
        dwell = next(r for r in events.snapshot() if r["event_type"] == "DWELL")
        assert dwell["ts_ms"] == t0 + 8000
        assert dwell["_read_ms"] >= t0 + 8000  # not early
        kill(worker)  # and a second restart does not fire it again
        worker = start_worker(kafka_settings, "0", tmp_path)
        publish_locations(kafka_settings, codec, [("other", 5, 5, t0)])
        wait_for(lambda: lag_is_zero(kafka_settings), 60, what="restarted worker caught up")
        assert [k for k in kinds(events) if k[0] == "DWELL"] == [("DWELL", "D", "quiet")]
    finally:
        stop(worker)
        events.close()
        registry.close()
