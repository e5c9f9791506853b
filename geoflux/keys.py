"""Keys scoped by tenant. Pure.

An entity id, a geofence id, a rule id, ... is unique only within its tenant: two tenants may
both have a `truck-1` and a geofence `depot`. Every per-tenant object is therefore keyed by
`"{tenant_id}/{object_id}"` — in state stores, caches and on topics (compacted configuration,
`geo.locations`, `geo.geofence-events`, `geo.cep-input`). Tenant ids are restricted to
`[A-Za-z0-9._:-]`, so the first `/` always ends the tenant and object ids may contain anything.
"""

from __future__ import annotations

import re

from geoflux.errors import ValidationError

TENANT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,120}$")
SEPARATOR = "/"


def check_tenant(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not TENANT_ID.match(tenant_id):
        raise ValidationError(f"tenant_id {tenant_id!r} must be 1-120 characters of letters, "
                              "digits, . _ : -")
    return tenant_id


def scoped(tenant_id: str, object_id: str) -> str:
    return f"{tenant_id}{SEPARATOR}{object_id}"


def unscoped(key: str) -> tuple[str, str]:
    """(tenant_id, object_id) of a scoped key; a ValidationError for a key that is not one."""
    tenant, sep, oid = key.partition(SEPARATOR)
    if not sep or not TENANT_ID.match(tenant):
        raise ValidationError(f"key {key[:80]!r} is not tenant-scoped (tenant/id)")
    return tenant, oid
