"""Avro binary readers compiled from a schema into straight-line Python. Pure.

The reading twin of `schemas.compiled_writer`. fastavro's `schemaless_reader` walks the schema
for every record (a type dispatch per field) after parsing its arguments; every stage decodes
each record it reads, and for the CEP stages that was about a third of their work.
`compile_reader` turns a (fastavro-parsed) schema into one function per record type that reads
its fields in order straight from the message's bytes, without copying them into a stream.
tests/unit/test_compiled_reader.py checks it returns what fastavro returns, on every product
schema, on random records and on corrupted ones.

It reads only a record written with the same schema: a record of another writer version needs
schema resolution, which stays fastavro's. Only what the product's schemas use is compiled:
primitives, records, enums, arrays, maps and two-branch unions with null; anything else returns
None and the codec keeps fastavro.

Corrupt input raises (IndexError, UnicodeDecodeError, struct.error or `Corrupt`); the codec
turns any of them into a ValidationError, as it does fastavro's errors. Where fastavro is
lenient with corrupt bytes, this is stricter: a length or count past the end of the message,
a negative length, an enum or union index out of range, or a varint longer than ten bytes is
an error, not a short string or a symbol counted from the end.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from schemas.codegen import SchemaCompiler, Unsupported

Reader = Callable[[bytes, int], tuple[Any, int]]

# a one-byte zig-zag varint's value: most lengths, enum and union indexes and small ints
_ZZ = tuple((z >> 1) ^ -(z & 1) for z in range(128))
_FIXED = {"double": "d", "float": "f"}


class Corrupt(ValueError):
    """The bytes are not a record of this schema."""


def read_long(d: bytes, p: int) -> tuple[int, int]:
    """A zig-zag varint at `p`: its value and the position after it."""
    b = d[p]
    p += 1
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise Corrupt("a varint longer than ten bytes")
        b = d[p]
        p += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), p


def _corrupt(what: str) -> None:
    raise Corrupt(what)


class _Compiler(SchemaCompiler):
    def __init__(self) -> None:
        super().__init__({"_zz": _ZZ, "_long": read_long, "_corrupt": _corrupt})
        self.defs: dict[str, dict] = {}  # full record name -> its schema

    def long(self, target: str, pad: str) -> list[str]:
        """Reads a varint into `target`: one byte without a call, longer ones through read_long."""
        return [f"{pad}b = d[p]", f"{pad}if b < 128:", f"{pad}    {target} = _zz[b]", f"{pad}    p += 1",
                f"{pad}else:", f"{pad}    {target}, p = _long(d, p)"]

    def sized(self, target: str, pad: str, decode: bool) -> list[str]:
        """A length, then that many bytes (a string is decoded as strict UTF-8)."""
        n = self.var("n")
        return [*self.long(n, pad), f"{pad}e = p + {n}",
                f"{pad}if {n} < 0 or e > end:", f"{pad}    _corrupt('a length past the end of the message')",
                f"{pad}{target} = d[p:e]{'.decode()' if decode else ''}", f"{pad}p = e"]

    def emit(self, t: Any, target: str, ind: int, lines: list[str]) -> None:
        """Appends to `lines` the statements that read a value of Avro type `t` into `target`."""
        pad = "    " * ind
        if isinstance(t, list):
            i, branch = self.nullable(t)
            k = self.var("k")
            lines += [*self.long(k, pad), f"{pad}if {k} == {i}:", f"{pad}    {target} = None",
                      f"{pad}elif {k} == {1 - i}:"]
            self.emit(branch, target, ind + 1, lines)
            lines += [f"{pad}else:", f"{pad}    _corrupt('a union index out of range')"]
            return
        if isinstance(t, dict):
            kind = self.kind(t)
            if kind == "record":
                lines.append(f"{pad}{target}, p = {self.record(t)}(d, p, end)")
            elif kind == "enum":
                symbols, i = self.var("SYMBOLS"), self.var("i")
                self.ns[symbols] = tuple(t["symbols"])
                lines += [*self.long(i, pad), f"{pad}if not 0 <= {i} < {len(t['symbols'])}:",
                          f"{pad}    _corrupt('an enum index out of range')", f"{pad}{target} = {symbols}[{i}]"]
            elif kind in ("array", "map"):
                if kind == "array" and not self.takes_a_byte(t["items"]):
                    raise Unsupported("an array of items that can take no bytes")
                count, item = self.var("c"), self.var()
                lines += [f"{pad}{target} = {'[]' if kind == 'array' else '{}'}", *self.long(count, pad),
                          f"{pad}while {count}:",
                          f"{pad}    if {count} < 0:",  # a block that gives its size in bytes too
                          f"{pad}        {count} = -{count}", *self.long("_", pad + "        "),
                          # every item takes a byte at least (_takes_a_byte), so a count larger
                          # than what is left is corrupt, not a loop over billions of items
                          f"{pad}    if {count} > end - p:",
                          f"{pad}        _corrupt('a count past the end of the message')",
                          f"{pad}    for _ in range({count}):"]
                if kind == "map":
                    key = self.var()
                    self.emit("string", key, ind + 2, lines)
                    self.emit(t["values"], item, ind + 2, lines)
                    lines.append(f"{pad}        {target}[{key}] = {item}")
                else:
                    self.emit(t["items"], item, ind + 2, lines)
                    lines.append(f"{pad}        {target}.append({item})")
                lines += self.long(count, pad + "    ")
            else:
                self.emit(kind, target, ind, lines)  # {"type": "string"} and the like
            return
        if t in self.records:
            lines.append(f"{pad}{target}, p = {self.records[t]}(d, p, end)")
        elif t == "null":
            lines.append(f"{pad}{target} = None")
        elif t in ("string", "bytes"):
            lines += self.sized(target, pad, decode=t == "string")
        elif t in ("int", "long"):
            lines += self.long(target, pad)
        elif t in _FIXED:
            unpack = self.var("UNPACK")
            self.ns[unpack] = struct.Struct("<" + _FIXED[t]).unpack_from
            lines += [f"{pad}{target}, = {unpack}(d, p)", f"{pad}p += {struct.calcsize(_FIXED[t])}"]
        elif t == "boolean":
            lines += [f"{pad}{target} = d[p] != 0", f"{pad}p += 1"]
        else:
            raise Unsupported(f"type {t!r}")

    def takes_a_byte(self, t: Any, seen: frozenset = frozenset()) -> bool:
        """Whether every value of `t` takes at least one byte (all but null and records of them)."""
        if isinstance(t, str) and t in self.defs:
            t = self.defs[t]
        if isinstance(t, dict) and t["type"] == "record":
            return t["name"] not in seen and any(
                self.takes_a_byte(f["type"], seen | {t["name"]}) for f in t["fields"])
        if isinstance(t, dict):
            return t["type"] in ("enum", "array", "map") or self.takes_a_byte(t["type"], seen)
        return t != "null"

    def record(self, t: dict) -> str:
        name = t["name"]
        if name not in self.records:
            fn = self.records[name] = self.var("record_")
            self.defs[name] = t
            lines = [f"def {fn}(d, p, end):"]
            names, fields = [], t["fields"]
            i = 0
            while i < len(fields):
                # a run of doubles and floats (a position's lon and lat) is one struct read
                run = 0
                while i + run < len(fields) and isinstance(fields[i + run]["type"], str) \
                        and fields[i + run]["type"] in _FIXED:
                    run += 1
                if run > 1:
                    fmt = "<" + "".join(_FIXED[f["type"]] for f in fields[i:i + run])
                    unpack, targets = self.var("UNPACK"), [self.var() for _ in range(run)]
                    self.ns[unpack] = struct.Struct(fmt).unpack_from
                    lines += [f"    {', '.join(targets)} = {unpack}(d, p)", f"    p += {struct.calcsize(fmt)}"]
                    names += [(f["name"], v) for f, v in zip(fields[i:i + run], targets)]
                    i += run
                    continue
                v = self.var()
                self.emit(fields[i]["type"], v, 1, lines)
                names.append((fields[i]["name"], v))
                i += 1
            lines.append("    return {" + ", ".join(f"{n!r}: {v}" for n, v in names) + "}, p")
            exec("\n".join(lines), self.ns)  # noqa: S102 - source generated from the schema above
        return self.records[name]


def compile_reader(parsed_schema: dict) -> Reader | None:
    """A function reading a record's Avro body from `data` at `pos`, returning the record and
    the position after it; or None if the schema uses something not compiled here."""
    fn = _Compiler().compile(parsed_schema)
    if fn is None:
        return None

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return fn(data, pos, len(data))

    return read
