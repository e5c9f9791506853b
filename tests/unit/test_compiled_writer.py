"""The compiled Avro writers write exactly fastavro's bytes, and fail where it fails."""

from __future__ import annotations

import io
import json
import random
import struct

import fastavro
import pytest

from geoflux.errors import ValidationError
from schemas.codec import AvroCodec, all_schema_names, load_schema
from schemas.compiled_writer import Unusual, compile_writer, encode_long
from tests.avro_random import INT64, random_value
from tests.samples import SAMPLES

def fastavro_bytes(name: str, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema(name), record)
    return buf.getvalue()


def compiled_bytes(name: str, record: dict) -> bytes:
    writer = compile_writer(load_schema(name))
    assert writer is not None, f"{name} is not compiled"
    return bytes(writer(bytearray(), record))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_product_sample_is_written_as_fastavro_writes_it(name):
    assert compiled_bytes(name, SAMPLES[name]) == fastavro_bytes(name, SAMPLES[name])


def test_every_product_schema_is_compiled():
    # a schema that stops compiling silently loses the speed-up: say so here
    assert [n for n in all_schema_names() if compile_writer(load_schema(n)) is None] == []


@pytest.mark.parametrize("name", ["EntityState", "GeofenceEvent", "LocationUpdate", "DlqRecord",
                                  "EvaluationResult", "AlertStatus"])
def test_random_records_are_written_as_fastavro_writes_them(name):
    rnd, schema = random.Random(name), load_schema(name)
    for _ in range(300):
        rec = random_value(rnd, schema, {})
        assert compiled_bytes(name, rec) == fastavro_bytes(name, rec)


def test_a_field_left_out_is_written_with_its_default_as_fastavro_does():
    rec = dict(SAMPLES["GeofenceEvent"])
    for field in ("reason", "produced_ms", "attributes"):
        del rec[field]
    assert compiled_bytes("GeofenceEvent", rec) == fastavro_bytes("GeofenceEvent", rec)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2 ** 31, *INT64])
def test_long_encoding_matches_fastavro_at_the_edges(n):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema("long"), n)
    assert encode_long(n) == buf.getvalue()


@pytest.mark.parametrize("number", [2.0, -2.7, 1.5, True, 2 ** 40])
def test_a_long_given_another_number_is_truncated_as_fastavro_does(number):
    rec = {**SAMPLES["LocationUpdate"], "ts_ms": number}
    assert compiled_bytes("LocationUpdate", rec) == fastavro_bytes("LocationUpdate", rec)


@pytest.mark.parametrize("value", [2.0, True, "5"])
def test_a_union_given_an_unusual_type_is_left_to_fastavro(value):
    """fastavro's union matching rejects 2.0 for a nullable long (it takes 2.0 for a plain
    long): the codec then fails, or writes, exactly as fastavro does."""
    rec = {**SAMPLES["LocationUpdate"], "produced_ms": value}
    with pytest.raises(Unusual):
        compiled_bytes("LocationUpdate", rec)
    try:
        expected = fastavro_bytes("LocationUpdate", rec)
    except (ValueError, TypeError, OverflowError):
        with pytest.raises(ValidationError):
            AvroCodec().encode("t", "LocationUpdate", rec)
    else:
        assert AvroCodec().encode("t", "LocationUpdate", rec)[5:] == expected


@pytest.mark.parametrize("bad", [
    {"ts_ms": float("nan")},
    {"produced_ms": 2 ** 63},
    {"ts_ms": 1e30},
    {"ts_ms": 2 ** 63},  # past a 64-bit long
    {"ts_ms": -(2 ** 63) - 1},
    {"ts_ms": "yesterday"},
    {"lon": "east"},
    {"entity_id": None},
    {"attributes": {"k": 1}},
])
def test_a_record_that_does_not_fit_is_a_validation_error(bad):
    rec = {**SAMPLES["LocationUpdate"], **bad}
    with pytest.raises(ValidationError, match="does not match LocationUpdate"):
        AvroCodec().encode("t", "LocationUpdate", rec)


def test_a_required_field_missing_is_a_validation_error():
    rec = dict(SAMPLES["LocationUpdate"])
    del rec["lon"]
    with pytest.raises(ValidationError):
        AvroCodec().encode("t", "LocationUpdate", rec)


@pytest.mark.parametrize("field_type", [
    {"type": "long", "logicalType": "timestamp-millis"},
    ["null", "string", "long"],
    {"type": "fixed", "name": "F", "size": 4},
])
def test_what_is_not_compiled_is_left_to_fastavro(field_type):
    schema = {"type": "record", "name": "X", "fields": [{"name": "a", "type": field_type}]}
    assert compile_writer(fastavro.parse_schema(schema)) is None


def test_the_codec_round_trips_through_the_compiled_writer():
    codec = AvroCodec()
    for name, rec in SAMPLES.items():
        data = codec.encode("t", name, rec)
        assert data[5:] == fastavro_bytes(name, rec)
        assert codec.decode(data, name) == fastavro.schemaless_reader(
            io.BytesIO(data[5:]), load_schema(name), None)


def test_a_history_column_round_trips_bytes_unchanged():
    cols = struct.pack("<3q", 1, -2, 2 ** 62)
    rec = json.loads(json.dumps(SAMPLES["EntityState"], default=lambda b: None))
    rec["history_columns"] = {**SAMPLES["EntityState"]["history_columns"], "ts_ms": cols}
    rec["history_chunks"] = SAMPLES["EntityState"]["history_chunks"]
    codec = AvroCodec()
    assert codec.decode(codec.encode("t", "EntityState", rec), "EntityState")["history_columns"]["ts_ms"] == cols


@pytest.mark.parametrize("name", ["CepAggregate", "CepMatch", "GeofenceEvent"])
def test_encode_each_gives_the_bytes_encode_gives_for_each_first_field_value(name):
    codec, record = AvroCodec(), dict(SAMPLES[name])
    first = load_schema(name)["fields"][0]["name"]
    # lengths on both sides of a one-byte varint (63 / 64 bytes), non-ASCII, empty
    values = ["p1", "", "x" * 63, "y" * 64, "é-模式-" * 20, "p2"]
    got = codec.encode_each("t", name, record, values)
    assert got == [codec.encode("t", name, {**record, first: v}) for v in values]
    assert [codec.decode(b, name)[first] for b in got] == values
    assert codec.encode_each("t", name, record, []) == []


def test_encode_each_refuses_a_first_field_that_is_not_a_string():
    codec, record = AvroCodec(), dict(SAMPLES["CepAggregate"])
    with pytest.raises(ValidationError):
        codec.encode_each("t", "CepAggregate", record, ["p1", 7])
    with pytest.raises(ValidationError):
        codec.encode_each("t", "CepAggregate", record, [None, "p1"])
