"""Validation shared by every configuration object (rules, silences, patterns). Pure."""

from __future__ import annotations

import re

from geoflux.errors import ValidationError

_ID = re.compile(r"^[A-Za-z0-9._:-]{1,120}$")


def object_id_and_tenant(body: object, what: str, id_field: str, given_id: str | None) -> tuple[dict, str, str]:
    """(body, id, tenant) of a JSON object that must carry an id and a tenant."""
    if not isinstance(body, dict):
        raise ValidationError(f"a {what} must be a JSON object")
    oid = given_id or body.get(id_field)
    if not isinstance(oid, str) or not _ID.match(oid):
        raise ValidationError(f"{id_field} must be 1-120 characters of letters, digits, . _ : -")
    tenant = body.get("tenant_id")
    if not isinstance(tenant, str) or not tenant:
        raise ValidationError("tenant_id is required")
    return body, oid, tenant
