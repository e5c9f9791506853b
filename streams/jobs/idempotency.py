"""Idempotency of job submissions: the request key, where the key index finds an earlier job,
and whether a repeat gets that job, a new one, or a refusal. Pure.

A key is scoped by tenant and process and covers the inputs: two tenants sending the same
`Idempotency-Key` header, or the same inputs, never share a job. The header's semantics are a
payment API's (Stripe's): within the window a header names exactly one request, so the same
header with other inputs, or for another process, is refused (422) instead of answering with
a job that is not the one asked for. Without a header the request itself is the key.

The key also travels to the tiers as the side-effect key (PostGIS result rows, Batch tags),
so it names the same computation wherever it is seen: same tenant, process and inputs. Its
value is therefore part of the contract (a tier that has seen it must see it again for the same
request after an upgrade): "client:" or "auto:" and the SHA-256 of tenant, process, header and
canonical inputs joined by the unit separator (0x1f).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.jobs.processes import canonical_inputs

MAX_HEADER_CHARS = 255
RERUN = ("failed", "dismissed")  # asking again for these runs the request again


class IdempotencyConflict(ValidationError):
    error_class = "idempotency-key-reused"


def check_header(header: str | None) -> str | None:
    if header is None or header == "":
        return None
    if len(header) > MAX_HEADER_CHARS or not header.isprintable():
        raise ValidationError(f"Idempotency-Key must be 1-{MAX_HEADER_CHARS} printable characters")
    return header


def request_key(tenant_id: str, process_id: str, inputs: object, header: str | None) -> str:
    material = "\x1f".join((tenant_id, process_id, header or "", canonical_inputs(inputs)))
    return ("client:" if header else "auto:") + hashlib.sha256(material.encode()).hexdigest()


def index_key(tenant_id: str, header: str | None, key: str) -> str:
    """The key index entry of a request: by header when there is one (so a header reused for
    another request is found, and refused), else by the request key itself."""
    return f"{tenant_id}\x1fh\x1f{header}" if header else f"{tenant_id}\x1fk\x1f{key}"


@dataclass(frozen=True, slots=True)
class Reuse:
    job_id: str | None  # the earlier job to answer with; None: create a new job


def decide(earlier: dict | None, *, key: str, process_id: str, header: str | None,
           now_ms: int, ttl_ms: int) -> Reuse:
    """`earlier`: the status of the job the index entry names (None: no entry). Raises
    IdempotencyConflict when the header already names a different request."""
    if earlier is None or now_ms - earlier["created_ms"] >= ttl_ms:
        return Reuse(None)  # never seen, or forgotten: the window is over
    if earlier["idempotency_key"] != key:
        what = (f"process {earlier['process_id']!r}" if earlier["process_id"] != process_id
                else "different inputs")
        days = ttl_ms / 86_400_000
        raise IdempotencyConflict(
            f"Idempotency-Key {header!r} was used for another request ({what}) within the last "
            f"{days:g} days; a key names one request: send a new key for a new request")
    if earlier["status"] in RERUN:
        return Reuse(None)
    return Reuse(earlier["job_id"])
