"""Avro in the Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the body.

Any Confluent-compatible client can read our topics. Ids come from a schema registry when one
is configured (`HttpSchemaRegistry`, Confluent's REST API); without one,
`LocalSchemaRegistry` derives a stable id from the schema's Parsing Canonical Form, so the
same schema has the same id on every host and in every run, and knows every version ever
released (`schemas/avro/history`), so a record an older release wrote still decodes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import ssl
import struct
import urllib.error
import urllib.request
from typing import Any, Protocol

import fastavro
import tenacity
from fastavro.schema import to_parsing_canonical_form

from geoflux.errors import ConfigurationError, PermanentError, TransientError, ValidationError
from geoflux.settings import RegistrySettings
from schemas.avro_dir import AVRO_DIR, AvroDir
from schemas.compiled_reader import Reader, compile_reader
from schemas.compiled_writer import Unusual, Writer, compile_writer, encode_long

MAGIC = 0
_HEADER = struct.Struct(">bI")
PRODUCT_SCHEMAS = AvroDir(AVRO_DIR)


def schema_text(name: str) -> str:
    return PRODUCT_SCHEMAS.text(name)


def load_schema(name: str) -> dict:
    return PRODUCT_SCHEMAS.parsed(name)


def all_schema_names() -> list[str]:
    return PRODUCT_SCHEMAS.names()


def canonical_form(schema: str | dict) -> str:
    parsed = fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else schema)
    return to_parsing_canonical_form(parsed)


def stable_schema_id(schema: str | dict) -> int:
    return _id_of_form(canonical_form(schema))


def _id_of_form(form: str) -> int:
    """A 31-bit id: positive in every Confluent client's int32."""
    digest = hashlib.sha256(form.encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFF_FFFF or 1


class SchemaRegistry(Protocol):
    def register(self, subject: str, schema: str) -> int: ...

    def schema_by_id(self, schema_id: int) -> str: ...


class LocalSchemaRegistry:
    """Registry-less mode: ids are `stable_schema_id`. Knows every released version in the
    directory's history and every current schema. A version differing from another only in
    docs or defaults has the same canonical form and so the same id; the current text wins,
    which is harmless because a writer schema's docs and defaults never affect decoding."""

    def __init__(self, schemas: AvroDir | None = None) -> None:
        self._by_id: dict[int, str] = {}
        self._canonical: dict[int, str] = {}
        schemas = schemas or PRODUCT_SCHEMAS
        for name in schemas.history_names():
            for text in schemas.versions(name):
                self.register(f"{name}-value", text)
        for name in schemas.names():
            self.register(f"{name}-value", schemas.text(name))

    def register(self, subject: str, schema: str) -> int:
        form = canonical_form(schema)
        schema_id = _id_of_form(form)
        if self._canonical.setdefault(schema_id, form) != form:
            # 31 bits of a hash: a clash is unlikely, and decoding with the wrong schema is worse
            raise PermanentError(f"schema id {schema_id} of {subject} clashes with another schema")
        self._by_id[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise ValidationError(f"unknown schema id {schema_id} (registry-less mode: not a "
                                  "version this release knows)") from None


def tls_context(url: str, ca_location=None, certificate_location=None,
                key_location=None) -> ssl.SSLContext | None:
    """The TLS context for an https registry with a private CA or a client certificate
    (None: the system's trust store, or plain http)."""
    if not (url.startswith("https") and (ca_location or certificate_location)):
        return None
    ctx = ssl.create_default_context(cafile=str(ca_location) if ca_location else None)
    if certificate_location:
        ctx.load_cert_chain(str(certificate_location), str(key_location) if key_location else None)
    return ctx


class HttpSchemaRegistry:
    """A Confluent-compatible registry (Confluent, Apicurio `/apis/ccompat/v7`, Karapace)."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None,
                 timeout_s: float = 10.0, ca_location: str | None = None,
                 certificate_location: str | None = None, key_location: str | None = None,
                 retry_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s, self.retry_s = timeout_s, retry_s
        self._ssl = tls_context(url, ca_location, certificate_location, key_location)
        self._auth = None
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        """One registry request; a transient failure (5xx, 429, unreachable) is retried with
        backoff for up to `retry_s`, since the caller is mid-record: a stage whose encode
        raised would set the record aside, and one registry restart must not do that."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5.0),
            stop=tenacity.stop_after_delay(self.retry_s), reraise=True)
        return retrying(self._call_once, method, path, body)

    def _call_once(self, method: str, path: str, body: dict | None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=self._ssl) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            if exc.code >= 500 or exc.code == 429:
                raise TransientError(f"schema registry {exc.code}: {detail}") from exc
            if exc.code in (401, 403):  # no record is at fault: never dead-letter for this
                raise ConfigurationError(f"schema registry {self.url} refused our credentials "
                                         f"({exc.code}): check GEOFLUX_SCHEMA_REGISTRY_USERNAME "
                                         "and _PASSWORD") from exc
            raise PermanentError(f"schema registry {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if isinstance(getattr(exc, "reason", None), ssl.SSLCertVerificationError):
                raise ConfigurationError(f"schema registry {self.url}: TLS certificate not "
                                         f"trusted ({exc.reason.verify_message}): check "
                                         "GEOFLUX_SCHEMA_REGISTRY_CA_LOCATION") from exc
            raise TransientError(f"schema registry {self.url} unreachable: {exc}") from exc

    def register(self, subject: str, schema: str) -> int:
        key = (subject, schema)
        if key not in self._ids:
            answer = self._call("POST", f"/subjects/{subject}/versions", {"schema": schema})
            self._ids[key] = int(answer["id"])
            self._schemas[self._ids[key]] = schema
        return self._ids[key]

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self._schemas:
            self._schemas[schema_id] = self._call("GET", f"/schemas/ids/{schema_id}")["schema"]
        return self._schemas[schema_id]


class AvroCodec:
    """Encodes records of a named schema for a topic, decodes any id into a reader schema.
    `schemas`: where the current (writer and reader) schemas come from; the product's own
    unless a test stages an upgrade."""

    def __init__(self, registry: SchemaRegistry | None = None, schemas: AvroDir | None = None) -> None:
        self.schemas = schemas or PRODUCT_SCHEMAS
        self.registry = registry or LocalSchemaRegistry(self.schemas)
        self._writer_ids: dict[tuple[str, str], int] = {}
        self._writers: dict[int, tuple[dict, str]] = {}
        # per record, only dict lookups: (header, parsed schema) by (topic, schema name) and
        # (writer, reader or None) by (schema id, reader name); every stage encodes and decodes
        # each record it handles, so this overhead is paid hundreds of thousands of times a second
        self._encoders: dict[tuple[str, str], tuple[bytes, dict, Writer | None]] = {}
        self._decoders: dict[tuple[int, str], tuple[dict, dict | None, Reader | None]] = {}

    def schema_id(self, topic: str, schema_name: str) -> int:
        key = (topic, schema_name)
        if key not in self._writer_ids:
            self._writer_ids[key] = self.registry.register(f"{topic}-value", self.schemas.text(schema_name))
        return self._writer_ids[key]

    def encode(self, topic: str, schema_name: str, record: dict[str, Any]) -> bytes:
        plan = self._encoders.get((topic, schema_name))
        if plan is None:
            parsed = self.schemas.parsed(schema_name)
            plan = self._encoders[(topic, schema_name)] = (
                _HEADER.pack(MAGIC, self.schema_id(topic, schema_name)), parsed, compile_writer(parsed))
        header, parsed, compiled = plan
        try:
            if compiled is not None:  # the same bytes as fastavro's, in about half the time
                try:
                    return bytes(compiled(bytearray(header), record))
                except Unusual:
                    pass
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, parsed, record)
            return buf.getvalue()
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error) as exc:
            raise ValidationError(f"record does not match {schema_name}: {exc}") from exc

    def encode_each(self, topic: str, schema_name: str, record: dict[str, Any], firsts: list[str]) -> list[bytes]:
        """`record` encoded once for each value of its first field (a string): the bytes
        after that field are alike, so they are encoded once and each value is put before
        them — what `encode` gives for each, for a fraction of the work (a CEP pattern's
        outputs copied to the identical patterns that share its state differ only there)."""
        parsed = self.schemas.parsed(schema_name)
        first = parsed["fields"][0] if isinstance(parsed, dict) and parsed.get("fields") else None
        if first is None or first["type"] != "string" or not firsts:
            return [self.encode(topic, schema_name, {**record, first["name"]: v} if first else record)
                    for v in firsts]
        one = self.encode(topic, schema_name, {**record, first["name"]: firsts[0]})
        own = firsts[0].encode()
        tail = one[5 + len(encode_long(len(own))) + len(own):]
        header = one[:5]
        out = [one]
        for v in firsts[1:]:
            if type(v) is not str:
                raise ValidationError(f"record does not match {schema_name}: {first['name']} must be a string")
            raw = v.encode()
            out.append(b"".join((header, encode_long(len(raw)), raw, tail)))
        return out

    def _writer(self, schema_id: int) -> tuple[dict, str]:
        if schema_id not in self._writers:
            text = self.registry.schema_by_id(schema_id)
            self._writers[schema_id] = (fastavro.parse_schema(json.loads(text)), text)
        return self._writers[schema_id]

    def decode(self, data: bytes | None, schema_name: str) -> dict[str, Any]:
        """Reads `data` (any registered writer version) as `schema_name`: schema resolution
        lets an old reader read a newer record and a new reader read an older one."""
        if not data or len(data) < 5:
            raise ValidationError(f"not Confluent wire format: {len(data or b'')} bytes")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ValidationError(f"not Confluent wire format: magic byte {magic}")
        plan = self._decoders.get((schema_id, schema_name))
        if plan is None:
            writer, writer_text = self._writer(schema_id)
            # Same schema on both sides, the hot path's common case: no resolution, and the
            # compiled reader (what fastavro reads, in about 60 % of its time) where it applies
            same = writer_text == self.schemas.text(schema_name)
            plan = self._decoders[(schema_id, schema_name)] = (
                writer, None if same else self.schemas.parsed(schema_name), compile_reader(writer) if same else None)
        try:
            if plan[2] is not None:
                return plan[2](data, 5)[0]
            return fastavro.schemaless_reader(io.BytesIO(data[5:]), plan[0], plan[1])
        except Exception as exc:  # fastavro raises a zoo of types on corrupt input
            raise ValidationError(f"cannot decode as {schema_name}: {exc!r}") from exc


def codec_from_settings(reg: RegistrySettings | None = None) -> AvroCodec:
    """The codec for `GEOFLUX_SCHEMA_REGISTRY_*`: a registry's ids when a URL is set (basic auth
    and TLS from the same settings), stable local ids otherwise."""
    reg = reg or RegistrySettings()
    if reg.url:
        return AvroCodec(HttpSchemaRegistry(
            reg.url, username=reg.username,
            password=reg.password.get_secret_value() if reg.password else None,
            timeout_s=reg.timeout_s, retry_s=reg.retry_s,
            ca_location=str(reg.ca_location) if reg.ca_location else None,
            certificate_location=str(reg.certificate_location) if reg.certificate_location else None,
            key_location=str(reg.key_location) if reg.key_location else None))
    return AvroCodec(LocalSchemaRegistry())
