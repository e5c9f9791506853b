"""A geofence's loitering count, pinned where mutation testing found nothing holding it: the
whole record its first DWELL writes (the table row readers get), from an empty count."""

from streams.downstream.loitering_state import apply, empty


def test_the_first_dwell_writes_the_whole_record_from_an_empty_count():
    assert empty("acme", "depot") == {"tenant_id": "acme", "geofence_id": "depot", "dwells": 0, "repeats": 0,
                                      "last_dwell_ms": 0, "last_entity": "", "recent_ids": []}
    event = {"event_type": "DWELL", "event_id": "ev1", "tenant_id": "acme", "geofence_id": "depot",
             "entity_id": "truck-1", "ts_ms": 0}
    assert apply(None, event) == ({"tenant_id": "acme", "geofence_id": "depot", "dwells": 1, "repeats": 0,
                                   "last_dwell_ms": 0, "last_entity": "truck-1", "recent_ids": ["ev1"]}, True)
