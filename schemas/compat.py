"""Can a reader schema read every record a writer schema can write? Avro's resolution rules,
checked the way schema registries check them, without a registry. Pure.

The engine is Apache Avro's `ReaderWriterCompatibilityChecker`, the Python port of the Java
`SchemaCompatibility` that Apicurio and Confluent's registries run, so a change this module
accepts is one their FULL_TRANSITIVE mode accepts. fastavro has no such checker (it resolves
at read time only). One gap of the port is closed here: it matches a reader's alias against
the writer's full name, but the spec lets an alias omit the namespace (fastavro honours that
too), so aliases are qualified before checking.

Pure: schemas in, a list of reasons out (empty: compatible). No I/O.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

_NAMED = {"record", "enum", "fixed", "error"}


def _qualified_aliases(node: Any, namespace: str | None) -> Any:
    """The schema with every named type's aliases written as full names."""
    if isinstance(node, list):
        return [_qualified_aliases(n, namespace) for n in node]
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if isinstance(node.get("type"), str) and node["type"] in _NAMED and "name" in node:
        name = node["name"]
        if "." in name:
            namespace = name.rsplit(".", 1)[0]
        elif "namespace" in node:
            namespace = node["namespace"] or None
        if "aliases" in node:
            out["aliases"] = [a if "." in a or not namespace else f"{namespace}.{a}"
                              for a in node["aliases"]]
    for key in ("type", "items", "values", "fields"):
        if key in node and not isinstance(node[key], str):
            out[key] = _qualified_aliases(node[key], namespace)
    return out


def _parse(schema: str | dict | list) -> avro.schema.Schema:
    as_json = json.loads(schema) if isinstance(schema, str) else schema
    return avro.schema.parse(json.dumps(_qualified_aliases(as_json, None)))


def read_problems(reader: str | dict, writer: str | dict) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty: it can)."""
    result = ReaderWriterCompatibilityChecker().get_compatibility(_parse(reader), _parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({k.value for k in result.incompatibilities})
    where = ", ".join(sorted(result.locations))
    return [f"{', '.join(kinds)}: {'; '.join(sorted(result.messages))} (at {where})"]


def full_problems(new: str | dict, old: str | dict) -> list[str]:
    """Backward (new reads old) and forward (old reads new): FULL compatibility."""
    return ([f"new cannot read old: {p}" for p in read_problems(new, old)]
            + [f"old cannot read new: {p}" for p in read_problems(old, new)])


def full_transitive_problems(versions: list[str | dict], first: int = 1) -> list[str]:
    """Every version against every earlier one, both ways: what a registry in FULL_TRANSITIVE
    mode would refuse. `versions[0]` is v`first`."""
    found = []
    for i in range(1, len(versions)):
        for j in range(i):
            found += [f"v{i + first} vs v{j + first}: {p}"
                      for p in full_problems(versions[i], versions[j])]
    return found
