"""The compatibility checker: what it must refuse, what it must accept, and that whatever it
accepts fastavro (the codec's engine) really reads."""

import io
import random

import fastavro
import fastavro.utils
import pytest

from schemas.compat import full_problems, full_transitive_problems, read_problems


def record(*fields, name="R", **extra):
    return {"type": "record", "name": name, "namespace": "io.test", "fields": list(fields), **extra}


def field(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


ID = field("id", "string")
COLOUR = {"type": "enum", "name": "Colour", "symbols": ["red", "green", "blue"]}


def colour(symbols, **extra):
    return dict(COLOUR, symbols=symbols, **extra)


def decodes(reader, writer, n=40, seed=7):
    """fastavro reads `n` generated records of `writer` as `reader` without an error."""
    random.seed(seed)
    w, r = fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    for rec in fastavro.utils.generate_many(w, n):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, rec)
        buf.seek(0)
        fastavro.schemaless_reader(buf, w, r)
    return True


# (reader, writer, why it must be refused, a word the reason must contain)
REFUSED = [
    (record(ID, field("n", "int")), record(ID), "reader field added without a default",
     "reader_field_missing_default_value"),
    (record(ID, field("n", "int")), record(ID, field("n", "string")), "string -> int",
     "type_mismatch"),
    (record(ID, field("n", "int")), record(ID, field("n", "long")), "long narrowed to int",
     "type_mismatch"),
    (record(ID, field("n", "float")), record(ID, field("n", "double")), "double narrowed to float",
     "type_mismatch"),
    (record(ID, field("c", colour(["red", "green"]))), record(ID, field("c", COLOUR)),
     "writer has an enum symbol the reader lacks (reader enum without a default)",
     "missing_enum_symbols"),
    (record(ID, field("v", ["null", "string"])), record(ID, field("v", ["null", "string", "long"])),
     "writer union has a branch the reader lacks", "missing_union_branch"),
    (record(ID, field("v", "string")), record(ID, field("v", ["null", "string"])),
     "writer may write null, reader cannot take it", "type_mismatch"),
    (record(ID, name="Renamed"), record(ID), "record renamed without an alias", "name_mismatch"),
    (record(ID, field("f", {"type": "fixed", "name": "F", "size": 8})),
     record(ID, field("f", {"type": "fixed", "name": "F", "size": 16})), "fixed size changed",
     "fixed_size_mismatch"),
    (record(ID, field("xs", {"type": "array", "items": record(field("a", "int"), field("b", "int"),
                                                               name="Item")})),
     record(ID, field("xs", {"type": "array", "items": record(field("a", "int"), name="Item")})),
     "nested record in an array gains a field without a default",
     "reader_field_missing_default_value"),
    (record(ID, field("m", {"type": "map", "values": "int"})),
     record(ID, field("m", {"type": "map", "values": "string"})), "map values string -> int",
     "type_mismatch"),
]

ACCEPTED = [
    (record(ID, field("n", ["null", "long"], default=None)), record(ID), "field added with null default"),
    (record(ID, field("n", "int", default=5)), record(ID), "field added with a default"),
    (record(ID), record(ID, field("gone", "string")), "reader ignores a field the writer has"),
    (record(ID, field("n", "long")), record(ID, field("n", "int")), "int promoted to long"),
    (record(ID, field("n", "float")), record(ID, field("n", "long")), "long promoted to float"),
    (record(ID, field("n", "double")), record(ID, field("n", "float")), "float promoted to double"),
    (record(ID, field("s", "bytes")), record(ID, field("s", "string")), "string read as bytes"),
    (record(ID, field("c", colour(["red", "green", "blue", "pink"]))), record(ID, field("c", COLOUR)),
     "reader enum gained a symbol"),
    (record(ID, field("c", colour(["red", "green"], default="red"))), record(ID, field("c", COLOUR)),
     "writer symbol unknown to the reader falls back to the reader enum's default"),
    (record(ID, field("v", ["null", "string", "long"])), record(ID, field("v", ["null", "string"])),
     "reader union gained a branch"),
    (record(ID, field("v", ["null", "string"])), record(ID, field("v", "string")),
     "plain type read into a union"),
    (record(ID, field("v", ["null", "long"])), record(ID, field("v", ["null", "int"])),
     "promotion inside a union"),
    (record(ID, name="Renamed", aliases=["R"]), record(ID), "record renamed with a short alias"),
    (record(ID, name="Renamed", aliases=["io.test.R"]), record(ID), "record renamed with a full alias"),
    (record(field("key", "string", aliases=["id"])), record(ID), "field renamed with an alias"),
    (record(field("n", "int", default=0), ID), record(ID, field("n", "int")), "fields reordered"),
    (record(ID, doc="now documented"), record(ID), "docs only"),
]


@pytest.mark.parametrize("reader,writer,why,kind", REFUSED, ids=[c[2] for c in REFUSED])
def test_refuses(reader, writer, why, kind):
    problems = read_problems(reader, writer)
    assert problems and kind in problems[0], f"{why}: {problems}"


@pytest.mark.parametrize("reader,writer,why", ACCEPTED, ids=[c[2] for c in ACCEPTED])
def test_accepts_and_fastavro_agrees(reader, writer, why):
    assert read_problems(reader, writer) == [], why
    assert decodes(reader, writer)


def test_bytes_read_as_string_holds_only_for_utf8_content():
    """Avro allows it and so does the checker; the bytes must be UTF-8 text, which no schema
    can say. The codec turns the failure into a ValidationError (tests/unit/test_schema_history)."""
    reader, writer = record(ID, field("s", "string")), record(ID, field("s", "bytes"))
    assert read_problems(reader, writer) == []
    w, r = fastavro.parse_schema(writer), fastavro.parse_schema(reader)
    for payload, ok in ((b"caf\xc3\xa9", True), (b"\x8f\x00", False)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, {"id": "x", "s": payload})
        buf.seek(0)
        if ok:
            assert fastavro.schemaless_reader(buf, w, r)["s"] == "café"
        else:
            with pytest.raises(UnicodeDecodeError):
                fastavro.schemaless_reader(buf, w, r)


def test_reads_schemas_as_json_text_too():
    import json

    assert read_problems(json.dumps(record(ID, field("n", "int"))), json.dumps(record(ID)))


def test_full_needs_both_directions():
    old, promoted = record(ID, field("n", "int")), record(ID, field("n", "long"))
    assert read_problems(promoted, old) == []  # backward holds...
    problems = full_problems(promoted, old)  # ...forward does not: an int reader meets a long
    assert len(problems) == 1 and problems[0].startswith("old cannot read new")
    # removing a field without a default: new reads old, but old readers need the field
    assert full_problems(record(ID), record(ID, field("n", "int")))[0].startswith("old cannot read new")
    # adding an enum symbol breaks old readers unless their enum has a default
    assert full_problems(record(ID, field("c", colour(["red", "green", "blue", "pink"]))),
                         record(ID, field("c", COLOUR)))
    assert full_problems(record(ID, field("c", colour(["red", "green", "blue", "pink"], default="red"))),
                         record(ID, field("c", colour(["red", "green", "blue"], default="red")))) == []


def test_a_rename_with_an_alias_is_backward_but_not_full():
    for renamed in (record(ID, name="Renamed", aliases=["R"]),
                    record(field("key", "string", aliases=["id"]))):
        problems = full_problems(renamed, record(ID))
        assert len(problems) == 1 and problems[0].startswith("old cannot read new"), problems


def test_full_transitive_compares_every_pair_not_only_neighbours():
    v1 = record(ID, field("n", "int", default=0))
    v2 = record(ID)  # drops n: fine both ways with v1 (v1's n has a default)
    v3 = record(ID, field("n", "string", default=""))  # fine with v2, not with v1
    assert full_problems(v2, v1) == [] and full_problems(v3, v2) == []
    problems = full_transitive_problems([v1, v2, v3])
    assert problems and all(p.startswith("v3 vs v1") for p in problems)
    assert full_transitive_problems([v2, v3], first=2) == []
    assert full_transitive_problems([v1, v3], first=4)[0].startswith("v5 vs v4")


def test_recursive_schemas_terminate():
    node = record(field("value", "int"), field("next", ["null", "Node"], default=None), name="Node")
    grown = record(field("value", "long"), field("next", ["null", "Node"], default=None),
                   field("label", ["null", "string"], default=None), name="Node")
    assert read_problems(grown, node) == []
    assert read_problems(node, grown)  # long narrowed to int, however deep


def _renamed(inner_writer_name: str, wrap) -> tuple[dict, dict]:
    """A writer whose named type `inner_writer_name` the reader renamed, keeping the old name as
    an alias without its namespace; `wrap` puts the named type where the test needs it."""
    old = {"type": "record", "name": inner_writer_name, "fields": [{"name": "x", "type": "int"}]}
    new = {"type": "record", "name": "Fresh", "aliases": [inner_writer_name.rsplit(".", 1)[-1]],
           "fields": [{"name": "x", "type": "int"}]}
    if "." in inner_writer_name:
        new["name"] = inner_writer_name.rsplit(".", 1)[0] + ".Fresh"
    return wrap(new), wrap(old)


def test_an_unqualified_alias_takes_the_namespace_of_a_dotted_name_wherever_the_type_sits():
    from schemas.compat import read_problems

    wraps = {
        "top": lambda t: t,
        "field": lambda t: {"type": "record", "name": "a.b.Outer", "fields": [{"name": "f", "type": t}]},
        "array": lambda t: {"type": "record", "name": "a.b.Outer",
                            "fields": [{"name": "f", "type": {"type": "array", "items": t}}]},
        "map": lambda t: {"type": "record", "name": "a.b.Outer",
                          "fields": [{"name": "f", "type": {"type": "map", "values": t}}]},
        "union": lambda t: {"type": "record", "name": "a.b.Outer", "fields": [{"name": "f", "type": ["null", t]}]},
    }
    for where, wrap in wraps.items():
        reader, writer = _renamed("deep.ns.Inner", wrap)
        assert read_problems(reader, writer) == [], where
        if where != "top":  # an undotted inner name inherits the enclosing namespace, a.b
            reader, writer = _renamed("Inner", wrap)
            assert read_problems(reader, writer) == [], f"{where}, inherited namespace"
    # the namespace is everything before the last dot: another split finds no match
    reader, writer = _renamed("deep.ns.Inner", wraps["top"])
    reader["aliases"] = ["ns.Inner"]  # qualified already: taken as it is, and it is not the name
    assert read_problems(reader, writer) != []


def test_a_reason_names_every_kind_message_and_location():
    from schemas.compat import full_transitive_problems, read_problems

    w = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    r = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"},
                                                   {"name": "b", "type": "string"}]}
    assert read_problems(r, w) == [
        "reader_field_missing_default_value, type_mismatch: b; reader type: string not compatible "
        "with writer type: int (at /fields/0/type, /fields/1)"]
    added = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]}
    assert full_transitive_problems([w, added], first=1) == [
        "v2 vs v1: new cannot read old: reader_field_missing_default_value: b (at /fields/1)"]
    assert full_transitive_problems([w], first=1) == []
