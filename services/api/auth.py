"""API keys and tenant isolation for the API and the gateway.

Keys map to a tenant, or to `*` (an operator: every tenant). Configured with
`GEOFLUX_API_KEYS` (JSON: {"key": "tenant" | "*"}) and/or `GEOFLUX_API_KEYS_FILE` (the same
JSON in a file). With no key configured every request is refused: there is no anonymous mode.

Conventions, the same on every endpoint:
- no key or an unknown key: 401;
- an object of another tenant: 404 (its existence is not disclosed);
- a list or query for another tenant (`?tenant_id=`), or a write naming another tenant: 403;
- an operator-only resource (DLQs, consumer-group resets): 403 for a tenant key.

Open without a key (OPEN_PATHS): the probes and metrics, the API definition
(`/api/v1/openapi.json`, `/api/v1/docs`), and the OGC API landing page `/` and `/conformance`:
an OGC client (OWSLib, QGIS) reads these first to discover the service and what it conforms
to, and they hold no tenant's data. Everything they link to (`/processes`, `/jobs`) needs a
key, which OWSLib sends as a header (`Processes(url, headers={"Authorization": ...})`).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from geoflux.errors import ConfigurationError
from services.api.problems import HTTPProblem, problem

# what a client reads before it knows it needs a key (see the module docstring)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/", "/conformance",
                        "/api/v1/openapi.json", "/api/v1/docs"})
# receivers call these with their own signature (verified by the handler), not an API key
SIGNED_PREFIX = "/api/v1/webhooks/"
ALL_TENANTS = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str  # the key's first characters: enough to tell keys apart in logs, not to use one
    tenant: str | None  # None: an operator, every tenant

    @property
    def is_operator(self) -> bool:
        return self.tenant is None


PRINCIPAL = web.RequestKey("principal", Principal)  # a typed key: aiohttp warns on string keys


def parse_api_keys(raw: str | dict | None) -> dict[str, Principal]:
    """Pure: the configured mapping -> key -> Principal, with a clear error for a bad one."""
    if raw in (None, "", {}):
        return {}
    try:
        mapping = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"API keys are not JSON: {exc}") from None
    if not isinstance(mapping, dict):
        raise ConfigurationError('API keys must be a JSON object {"key": "tenant" | "*"}')
    keys = {}
    for key, tenant in mapping.items():
        if not isinstance(key, str) or len(key) < 16:
            raise ConfigurationError("every API key must be a string of at least 16 characters")
        if not isinstance(tenant, str) or not tenant:
            raise ConfigurationError(f"API key {key[:6]}…: tenant must be a non-empty string or '*'")
        keys[key] = Principal(key[:6], None if tenant == ALL_TENANTS else tenant)
    return keys


def load_api_keys(inline: str | dict | None, file: str | None) -> dict[str, Principal]:
    keys = parse_api_keys(inline)
    if file:
        try:
            keys.update(parse_api_keys(Path(file).read_text()))
        except OSError as exc:
            raise ConfigurationError(f"API keys file {file}: {exc.strerror}") from None
    return keys


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if request.headers.get("X-API-Key"):
        return request.headers["X-API-Key"]
    return None  # never from the URL, where proxies log it (browsers use a stream ticket)


def authenticate(keys: dict[str, Principal], presented: str | None) -> Principal | None:
    if not presented:
        return None
    for key, principal in keys.items():  # constant-time per key: no timing oracle on the key
        if hmac.compare_digest(key.encode(), presented.encode()):
            return principal
    return None


def auth_middleware(keys: dict[str, Principal], tickets=None):
    """`tickets` (services.api.stream_tickets.TicketBook): a WebSocket upgrade may present a
    single-use `?ticket=` instead of a key."""
    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.path in OPEN_PATHS or request.path.startswith(("/console", SIGNED_PREFIX)):
            return await handler(request)
        principal = authenticate(keys, presented_key(request))
        if (principal is None and tickets is not None and "ticket" in request.query
                and request.headers.get("Upgrade", "").lower() == "websocket"):
            principal = tickets.redeem(request.query["ticket"])
        if principal is None:
            detail = ("no API keys are configured (GEOFLUX_API_KEYS)" if not keys else
                      "missing or unknown API key: send Authorization: Bearer <key> or X-API-Key")
            resp = problem(401, "Unauthorized", detail)
            resp.headers["WWW-Authenticate"] = 'Bearer realm="geoflux"'
            return resp
        request[PRINCIPAL] = principal
        return await handler(request)

    return middleware


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def tenant_filter(request: web.Request) -> str | None:
    """The tenant a list or query is restricted to: the key's own, or for an operator the
    optional `?tenant_id=` (None: every tenant)."""
    who, asked = principal(request), request.query.get("tenant_id")
    if who.is_operator:
        return asked or None
    if asked and asked != who.tenant:
        raise HTTPProblem(403, "Forbidden", f"this API key may not read tenant {asked!r}")
    return who.tenant


def object_tenant(request: web.Request) -> str | None:
    """Whose object an id names: the key's tenant (ids are unique only within a tenant); for
    an operator the optional `?tenant_id=` (None: look across tenants)."""
    who = principal(request)
    if who.is_operator:
        return request.query.get("tenant_id") or None
    return who.tenant


def check_visible(request: web.Request, owner_tenant: str, what: str) -> None:
    """An object of another tenant is reported as not found."""
    who = principal(request)
    if not who.is_operator and owner_tenant != who.tenant:
        raise HTTPProblem(404, "Not Found", f"{what} not found")


def write_tenant(request: web.Request, named: str | None) -> str | None:
    """The tenant a write is made for: the key's own; naming another one is 403."""
    who = principal(request)
    if who.is_operator:
        return named
    if named is not None and named != who.tenant:
        raise HTTPProblem(403, "Forbidden", f"this API key may not write for tenant {named!r}")
    return who.tenant


def with_tenant(request: web.Request, obj: object) -> object:
    """An object written with a key: `tenant_id` filled in with the key's tenant when it names
    none, 403 when it names another (anything not an object is left for its validator)."""
    if isinstance(obj, dict):
        named = obj.get("tenant_id")
        tenant = write_tenant(request, named if isinstance(named, str) else None)
        if tenant is not None and named is None:
            return {**obj, "tenant_id": tenant}
    return obj


def require_operator(request: web.Request, what: str) -> None:
    if not principal(request).is_operator:
        raise HTTPProblem(403, "Forbidden", f"{what} needs an operator key")
