"""Avro binary writers compiled from a schema into straight-line Python. Pure.

fastavro's writer walks the schema for every record: a dict lookup and a type dispatch per
field, about 0.4 us a field. A stage encodes every entity state it changes and every event it
emits, so for the evaluator that walk was a quarter of its time. `compile_writer` turns a
(fastavro-parsed) schema into one function per record type that appends the fields in order,
about half the cost, and the bytes are the same as fastavro's (tests/unit/test_compiled_writer.py
compares them on every product schema and on random records).

Only what the product's schemas use is compiled: primitives, records, enums, arrays, maps and
two-branch unions with null. Anything else (logical types, fixed, wider unions) returns None
and the codec keeps fastavro for that schema; a union given an unusual Python type raises
`Unusual` and the codec writes that record with fastavro, so such records fail or pass exactly
as before.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from schemas.codegen import SchemaCompiler, Unsupported

Writer = Callable[[bytearray, Any], bytearray]

_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_SMALL = [bytes([z]) for z in range(128)]


def encode_long(n: int) -> bytes:
    """Zig-zag varint, as Avro writes int and long."""
    if type(n) is not int:
        if isinstance(n, (str, bytes)):
            raise TypeError(f"an integer is required, not {type(n).__name__}")
        n = int(n)  # as fastavro does: any number, truncated (2.7 -> 2; NaN raises)
    z = (n << 1) ^ (n >> 63)
    if 0 <= z < 128:
        return _SMALL[z]
    if z < 0 or z >> 64:
        raise OverflowError(f"{n} does not fit a 64-bit Avro long")
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class Unusual(Exception):
    """A union's value of another Python type than the one its branch is normally given
    (a float for a long, a tuple for an array...): fastavro's union matching decides those,
    so the record is written by fastavro instead."""


# the Python type a union branch is normally given; fastavro checks the others (and rejects
# some that would pass outside a union, e.g. 2.0 for a long), so they are left to it
_UNION_TYPES = {"string": "str", "bytes": "bytes", "int": "int", "long": "int", "double": "float",
                "float": "float", "boolean": "bool", "record": "dict", "map": "dict",
                "array": "list", "enum": "str"}


def _unusual() -> None:
    raise Unusual


class _Compiler(SchemaCompiler):
    def __init__(self) -> None:
        super().__init__({"_long": encode_long, "_double": _DOUBLE, "_float": _FLOAT, "_unusual": _unusual})

    def length(self, expr: str, ind: int) -> list[str]:
        """Writes a length (a non-negative int from len()): below 64 its zig-zag varint is one
        byte, 2n, appended without calling encode_long; most strings and arrays are that short."""
        pad, n = "    " * ind, self.var("n")
        return [f"{pad}{n} = {expr}", f"{pad}if {n} < 64:", f"{pad}    o.append({n} << 1)",
                f"{pad}else:", f"{pad}    o += _long({n})"]

    def emit(self, t: Any, expr: str, ind: int, lines: list[str]) -> None:
        """Appends to `lines` the statements that write `expr`, of Avro type `t`, to `o`."""
        pad = "    " * ind
        if isinstance(t, list):
            i, branch = self.nullable(t)
            kind = branch["type"] if isinstance(branch, dict) else branch
            kind = "record" if kind in self.records else kind
            if kind not in _UNION_TYPES:
                raise Unsupported(f"a union with {kind!r}")
            lines += [f"{pad}if {expr} is None:", f"{pad}    o += {encode_long(i)!r}",
                      f"{pad}elif type({expr}) is not {_UNION_TYPES[kind]}:", f"{pad}    _unusual()",
                      f"{pad}else:", f"{pad}    o += {encode_long(1 - i)!r}"]
            self.emit(branch, expr, ind + 1, lines)
            return
        if isinstance(t, dict):
            kind = self.kind(t)
            if kind == "record":
                lines.append(f"{pad}{self.record(t)}(o, {expr})")
            elif kind == "enum":
                table = self.var("ENUM")
                self.ns[table] = {s: encode_long(i) for i, s in enumerate(t["symbols"])}
                lines.append(f"{pad}o += {table}[{expr}]")
            elif kind in ("array", "map"):
                item = self.var()
                lines += [f"{pad}if {expr}:", *self.length(f"len({expr})", ind + 1)]
                if kind == "array":
                    lines.append(f"{pad}    for {item} in {expr}:")
                else:
                    key = self.var()
                    lines.append(f"{pad}    for {key}, {item} in {expr}.items():")
                    self.emit("string", key, ind + 2, lines)
                self.emit(t["items"] if kind == "array" else t["values"], item, ind + 2, lines)
                lines.append(f"{pad}o += b'\\x00'")  # one block, then the empty block that ends it
            else:
                self.emit(kind, expr, ind, lines)  # {"type": "string"} and the like
            return
        if t in self.records:
            lines.append(f"{pad}{self.records[t]}(o, {expr})")
        elif t == "null":
            pass
        elif t == "string":
            b = self.var()
            lines += [f"{pad}{b} = {expr}.encode()", *self.length(f"len({b})", ind), f"{pad}o += {b}"]
        elif t == "bytes":
            lines += [*self.length(f"len({expr})", ind), f"{pad}o += {expr}"]
        elif t in ("int", "long"):
            lines.append(f"{pad}o += _long({expr})")
        elif t == "double":
            lines.append(f"{pad}o += _double({expr})")
        elif t == "float":
            lines.append(f"{pad}o += _float({expr})")
        elif t == "boolean":
            lines.append(f"{pad}o += b'\\x01' if {expr} else b'\\x00'")
        else:
            raise Unsupported(f"type {t!r}")

    def record(self, t: dict) -> str:
        name = t["name"]
        if name not in self.records:
            fn = self.records[name] = self.var("record_")
            lines = [f"def {fn}(o, r):"]
            for f in t["fields"]:
                v, field = self.var(), repr(f["name"])
                ftype = f["type"]
                if "default" in f:
                    default = self.var("DEFAULT")
                    self.ns[default] = f["default"]
                    lines.append(f"    {v} = r.get({field}, {default})")
                elif isinstance(ftype, list) and "null" in ftype:
                    lines.append(f"    {v} = r.get({field})")  # fastavro writes a missing one as null
                else:
                    lines.append(f"    {v} = r[{field}]")
                self.emit(ftype, v, 1, lines)
            lines.append("    return o")
            exec("\n".join(lines), self.ns)  # noqa: S102 - source generated from the schema above
        return self.records[name]


def compile_writer(parsed_schema: dict) -> Writer | None:
    """A function appending the Avro body of a record to a bytearray (and returning it), or
    None if the schema uses something not compiled here."""
    return _Compiler().compile(parsed_schema)
