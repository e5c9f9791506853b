"""What the compiled Avro readers and writers share (`schemas.compiled_reader`,
`schemas.compiled_writer`): fresh names, the namespace the generated functions run in, and the
part of Avro they compile. Pure."""

from __future__ import annotations

from typing import Any


class Unsupported(Exception):
    """The schema uses something not compiled: the codec keeps fastavro for it."""


class SchemaCompiler:
    """Generates one Python function per record type of a schema (`record`, in a subclass)."""

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns  # the generated functions' globals: helpers, tables, each other
        self.records: dict[str, str] = {}  # full record name -> its function's name
        self.n = 0

    def var(self, prefix: str = "v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    @staticmethod
    def nullable(t: list) -> tuple[int, Any]:
        """(position of null, the other branch) of a [null, X] union; no other union compiles."""
        if len(t) != 2 or "null" not in t:
            raise Unsupported("a union other than [null, X]")
        i = t.index("null")
        branch = t[1 - i]
        if isinstance(branch, dict) and "logicalType" in branch:
            raise Unsupported("logical types")
        return i, branch

    @staticmethod
    def kind(t: dict) -> str:
        """The type of a schema written as an object; logical types do not compile."""
        if "logicalType" in t:
            raise Unsupported("logical types")
        return t["type"]

    def record(self, t: dict) -> str:
        raise NotImplementedError

    def compile(self, parsed_schema: Any) -> Any:
        """The function of the schema's top record, or None if the schema is not a record or
        uses something not compiled."""
        if not isinstance(parsed_schema, dict) or parsed_schema.get("type") != "record":
            return None
        try:
            return self.ns[self.record(parsed_schema)]
        except Unsupported:
            return None
