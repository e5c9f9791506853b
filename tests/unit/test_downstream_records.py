"""The Faust side of the public topics: records match the Avro contract, the codec reads and
writes our wire format, loitering counts de-duplicate by event id."""

from __future__ import annotations

import json

import pytest
from faust.serializers import codecs

from geoflux.errors import ValidationError
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec, load_schema
from streams.downstream import loitering_state
from streams.downstream.codec import PUBLIC_TOPICS, WireFormatError, register_codecs
from streams.downstream.records import RECORDS, GeofenceEvent

# Faust refuses a field without a default after one with a default; these Avro-required
# fields follow optional ones in the schema, so the record gives them a default
DEFAULTED_REQUIRED = {("AlertStatus", "updated_ms"), ("JobStatus", "created_ms"),
                      ("JobStatus", "updated_ms")}
SCALARS = {"string": str, "int": int, "long": int, "double": float, "boolean": bool}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_each_record_is_its_schema_field_for_field(name):
    record, schema = RECORDS[name], load_schema(name)
    assert list(record._options.fields) == [f["name"] for f in schema["fields"]]
    defaults = record._options.defaults
    for f in schema["fields"]:
        if "default" in f:
            assert defaults[f["name"]] == f["default"], f["name"]
        elif (name, f["name"]) not in DEFAULTED_REQUIRED:
            assert f["name"] not in defaults, f"{f['name']} is required in {name}.avsc"
        t = f["type"]
        if isinstance(t, str) and t in SCALARS:
            assert record._options.fields[f["name"]] is SCALARS[t], f["name"]


def test_mutable_defaults_are_not_shared():
    a = GeofenceEvent(event_id="a", event_type="ENTER", entity_id="e", geofence_id="g",
                      geofence_version=1, tenant_id="t", lon=0.0, lat=0.0, ts_ms=1, source="s")
    b = GeofenceEvent(event_id="b", event_type="ENTER", entity_id="e", geofence_id="g",
                      geofence_version=1, tenant_id="t", lon=0.0, lat=0.0, ts_ms=1, source="s")
    a.attributes["k"] = "v"
    assert b.attributes == {}


EVENT = {"event_id": "e1", "event_type": "DWELL", "entity_id": "truck", "geofence_id": "yard",
         "geofence_version": 3, "tenant_id": "acme", "lon": 13.4, "lat": 52.5, "ts_ms": 1000,
         "source": "loc:1", "reason": None, "produced_ms": None, "attributes": {"k": "v"}}


def test_faust_codec_reads_and_writes_our_wire_format_registry_less():
    avro = AvroCodec()
    names = register_codecs(KafkaSettings(topic_prefix="p."), avro)
    assert set(names) == set(PUBLIC_TOPICS)
    codec = codecs.get_codec(names["geo.geofence-events"])
    wire = avro.encode("p.geo.geofence-events", "GeofenceEvent", EVENT)
    assert codec.loads(wire) == EVENT
    record = GeofenceEvent.from_data(codec.loads(wire))
    assert record.event_type == "DWELL" and record.attributes == {"k": "v"}
    assert codec.dumps(record) == wire  # a record written by Faust is a stage's bytes
    assert codec.dumps(EVENT) == wire
    for garbage in (b"\x00\x00\x00", b"not avro at all", wire[:5] + b"\xff", b"\x00\x00\x00\x00\x07ab"):
        with pytest.raises(WireFormatError) as caught:
            codec.loads(garbage)
        assert caught.value.error_class == "undecodable"


def dwell(event_id, ts=1000, event_type="DWELL", entity="truck"):
    return {**EVENT, "event_id": event_id, "ts_ms": ts, "event_type": event_type, "entity_id": entity}


def test_loitering_counts_each_dwell_once():
    state = None
    for e in [dwell("a"), dwell("b", 3000, entity="van"), dwell("a"), dwell("b", 3000)]:
        new, _ = loitering_state.apply(state, e)
        state = new or state
    assert (state["dwells"], state["repeats"]) == (2, 2)
    assert state["last_dwell_ms"] == 3000 and state["last_entity"] == "van"
    assert loitering_state.apply(state, dwell("c", event_type="ENTER")) == (None, False)
    json.dumps(state)  # the table stores it as JSON


def test_loitering_keeps_a_bounded_window_of_ids():
    state = None
    for i in range(5):
        state, counted = loitering_state.apply(state, dwell(f"id{i}"), keep=3)
        assert counted
    assert state["recent_ids"] == ["id2", "id3", "id4"]
    assert loitering_state.apply(state, dwell("id4"), keep=3)[1] is False
    # older than the window: stated in the module, and counted again
    assert loitering_state.apply(state, dwell("id0"), keep=3)[1] is True


def test_loitering_refuses_an_event_under_another_key():
    assert loitering_state.check_key("acme/yard", EVENT) == "acme/yard"
    with pytest.raises(ValidationError, match="not the event's geofence"):
        loitering_state.check_key("acme/other", EVENT)
    with pytest.raises(ValidationError):
        loitering_state.check_key(None, EVENT)
