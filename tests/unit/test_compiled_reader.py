"""The compiled Avro readers return what fastavro returns, and reject what it rejects (and a
few corruptions it lets through, named in schemas/compiled_reader.py)."""

from __future__ import annotations

import io
import random
import struct

import fastavro
import pytest

from geoflux.errors import ValidationError
from schemas.codec import AvroCodec, all_schema_names, load_schema
from schemas.compiled_reader import Corrupt, compile_reader, read_long
from schemas.compiled_writer import encode_long
from tests.avro_random import INT64, random_value
from tests.samples import SAMPLES

ERRORS = (IndexError, UnicodeDecodeError, struct.error, Corrupt)


def body(name: str, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, load_schema(name), record)
    return buf.getvalue()


def fastavro_read(name: str, data: bytes):
    return fastavro.schemaless_reader(io.BytesIO(data), load_schema(name), None)


def compiled_read(name: str, data: bytes, pos: int = 0):
    reader = compile_reader(load_schema(name))
    assert reader is not None, f"{name} is not compiled"
    return reader(data, pos)


def test_every_product_schema_is_compiled():
    # a schema that stops compiling silently loses the speed-up: say so here
    assert [n for n in all_schema_names() if compile_reader(load_schema(n)) is None] == []


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_product_sample_is_read_as_fastavro_reads_it(name):
    data = body(name, SAMPLES[name])
    record, end = compiled_read(name, b"\x00hdr" + data, 4)
    assert record == fastavro_read(name, data)
    assert end == 4 + len(data)


@pytest.mark.parametrize("name", sorted(all_schema_names()))
def test_random_records_are_read_as_fastavro_reads_them(name):
    rnd, schema = random.Random(name), load_schema(name)
    for _ in range(200):
        data = body(name, random_value(rnd, schema, {}))
        expected = fastavro_read(name, data)
        got, end = compiled_read(name, data)
        assert got == expected
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]
        assert end == len(data)


def _corruptions(data: bytes, rnd: random.Random):
    for n in range(len(data)):
        yield data[:n]
    for _ in range(600):
        b = bytearray(data)
        for _ in range(rnd.choice((1, 1, 2, 5))):
            i = rnd.randrange(len(b))
            b[i] = rnd.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rnd.randrange(256)))
        yield bytes(b)
    for _ in range(200):
        yield bytes(rnd.randrange(256) for _ in range(rnd.choice((1, 8, 40, 200))))


@pytest.mark.parametrize("name", ["GeofenceEvent", "LocationUpdate", "EntityState", "CepMatch", "DlqRecord"])
def test_corrupt_bytes_are_rejected_where_fastavro_rejects_them_and_never_read_differently(name):
    rnd = random.Random(name)
    stricter = 0
    for data in _corruptions(body(name, SAMPLES[name]), rnd):
        try:
            expected = fastavro_read(name, data)
        except Exception:  # noqa: BLE001 - fastavro raises a zoo of types on corrupt input
            with pytest.raises(ERRORS):
                compiled_read(name, data)
            continue
        try:
            got, _ = compiled_read(name, data)
        except ERRORS:
            stricter += 1  # the documented cases: see the module's docstring
            continue
        assert got == expected
    # the stricter cases are rare corruptions, not a reader that rejects what it should read
    assert stricter < 50


@pytest.mark.parametrize("data, what", [
    (encode_long(2 ** 40) + b"abc", "length past the end"),
    (encode_long(-3) + b"abc", "length past the end"),
    (b"\xff" * 11 + b"\x00", "longer than ten bytes"),
])
def test_a_length_that_does_not_fit_is_corrupt_not_a_short_string(data, what):
    with pytest.raises(Corrupt, match=what):
        compiled_read("LocationUpdate", data)


def test_a_huge_item_count_is_corrupt_at_once_not_a_long_loop():
    schema = fastavro.parse_schema({"type": "record", "name": "A", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "long"}}]})
    reader = compile_reader(schema)
    with pytest.raises(Corrupt, match="count past the end"):
        reader(encode_long(2 ** 60) + b"\x02" * 10, 0)
    # a block that gives its size in bytes (a negative count) is read, as the spec allows
    assert reader(encode_long(-2) + encode_long(2) + b"\x02\x04" + b"\x00", 0) == ({"xs": [1, 2]}, 5)


def test_enum_and_union_indexes_out_of_range_are_corrupt():
    data = bytearray(body("GeofenceEvent", SAMPLES["GeofenceEvent"]))
    first = data[0] // 2 + 1  # past event_id: the event_type's index
    for bad in (encode_long(-1), encode_long(3)):
        with pytest.raises(Corrupt, match="enum index"):
            compiled_read("GeofenceEvent", bytes(data[:first] + bad + data[first + 1:]))
    schema = fastavro.parse_schema({"type": "record", "name": "U", "fields": [
        {"name": "u", "type": ["null", "long"]}]})
    reader = compile_reader(schema)
    assert reader(b"\x00", 0) == ({"u": None}, 1)
    assert reader(b"\x02\x54", 0) == ({"u": 42}, 2)
    for bad in (b"\x04\x00", b"\x01\x00"):
        with pytest.raises(Corrupt, match="union index"):
            reader(bad, 0)


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, -65, 2 ** 31, *INT64])
def test_long_reading_matches_the_writer_at_the_edges(n):
    assert read_long(b"x" + encode_long(n), 1) == (n, 1 + len(encode_long(n)))


@pytest.mark.parametrize("field_type", [
    {"type": "long", "logicalType": "timestamp-millis"},
    ["null", "string", "long"],
    {"type": "fixed", "name": "F", "size": 4},
    {"type": "array", "items": "null"},
])
def test_what_is_not_compiled_is_left_to_fastavro(field_type):
    schema = {"type": "record", "name": "X", "fields": [{"name": "a", "type": field_type}]}
    assert compile_reader(fastavro.parse_schema(schema)) is None


def test_the_codec_reads_through_it_and_turns_corruption_into_a_validation_error():
    codec = AvroCodec()
    for name, rec in SAMPLES.items():
        data = codec.encode("t", name, rec)
        assert codec.decode(data, name) == fastavro_read(name, data[5:])
    data = codec.encode("t", "GeofenceEvent", SAMPLES["GeofenceEvent"])
    with pytest.raises(ValidationError, match="cannot decode as GeofenceEvent"):
        codec.decode(data[:-3], "GeofenceEvent")
    with pytest.raises(ValidationError, match="cannot decode as GeofenceEvent"):
        codec.decode(data[:5] + encode_long(2 ** 40) + data[6:], "GeofenceEvent")


def _rec(name: str, *fields: tuple[str, object]) -> dict:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


NULLS = _rec("Nulls", ("n", "null"))
LONGS = _rec("Longs", ("n", "null"), ("l", "long"))


@pytest.mark.parametrize("schema", [
    # shapes the product's schemas do not use today: [X, null], a type written as an object,
    # a null field, a record ending in a run of float and double, a single double
    _rec("A", ("a", ["long", "null"]), ("b", {"type": "string"}), ("c", "null"), ("x", "float"),
         ("y", "double")),
    # a record type used again by name, alone and as array items; boolean and bytes
    _rec("B", ("p", _rec("P", ("lon", "double"))), ("q", "P"), ("ps", {"type": "array", "items": "P"}),
         ("flag", "boolean"), ("raw", "bytes")),
], ids=["unions-objects-nulls-floats", "named-records"])
def test_other_schema_shapes_are_read_as_fastavro_reads_them(schema):
    parsed, rnd = fastavro.parse_schema(schema), random.Random(schema["name"])
    reader = compile_reader(parsed)
    assert reader is not None
    for _ in range(100):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, random_value(rnd, schema, {}))
        data = buf.getvalue()
        assert reader(data, 0) == (fastavro.schemaless_reader(io.BytesIO(data), parsed, None), len(data))


@pytest.mark.parametrize("items, compiled", [
    ("null", False), (_rec("N2", ("n", "null")), False), (_rec("L2", ("n", "null"), ("l", "long")), True),
    ({"type": "enum", "name": "E", "symbols": ["A"]}, True),
    ({"type": "map", "values": "null"}, True), ({"type": "array", "items": "long"}, True),
    ("Nulls", False), ("Longs", True),  # by name: the records defined in the fields before
])
def test_an_array_compiles_only_if_each_item_takes_a_byte(items, compiled):
    """An item that can take no bytes would let a corrupt count loop without reading."""
    schema = _rec("R", ("nulls", NULLS), ("longs", LONGS), ("xs", {"type": "array", "items": items}))
    assert (compile_reader(fastavro.parse_schema(schema)) is not None) == compiled
