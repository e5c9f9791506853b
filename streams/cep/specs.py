"""What a pattern says about the events it wants, and the validation every kind shares. Pure.

An `EventSpec` picks geofence events by type and (optionally) geofence, and — for the kinds
that relate different entities (join) — by entity: an id prefix, a glob, and attributes. The
attributes are looked up through a hook (`attributes_of`): today the attributes an event
carries itself; an enrichment join (entity attributes from `geo.entities`) plugs in there.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Callable

from geoflux.errors import ValidationError

EVENT_TYPES = ("ENTER", "EXIT", "DWELL")
MAX_WITHIN_S = 7 * 86_400
MAX_FILTER_CHARS = 200


def event_attributes(ev: dict) -> dict:
    return ev.get("attributes") or {}


#: where entity attributes come from; the enrichment join replaces it
attributes_of: Callable[[dict], dict] = event_attributes


@dataclass(frozen=True, slots=True)
class EventSpec:
    event_type: str | None  # None: any type
    geofence_id: str | None = None  # None: any geofence
    entity_prefix: str | None = None
    entity_glob: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def matches(self, ev: dict) -> bool:
        if self.event_type is not None and ev["event_type"] != self.event_type:
            return False
        if self.geofence_id is not None and ev["geofence_id"] != self.geofence_id:
            return False
        return self.entity_matches(ev)

    def entity_matches(self, ev: dict) -> bool:
        entity = ev["entity_id"]
        if self.entity_prefix is not None and not entity.startswith(self.entity_prefix):
            return False
        # fnmatch, not a regular expression: a tenant's glob cannot backtrack the stage to a halt
        if self.entity_glob is not None and not fnmatch.fnmatchcase(entity, self.entity_glob):
            return False
        if self.attributes:
            attrs = attributes_of(ev)
            return all(attrs.get(k) == v for k, v in self.attributes)
        return True


def number(body: dict, key: str, lo: float, hi: float, default: float | None = None,
           lo_open: bool = True) -> float:
    v = body.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not (
            (lo < v if lo_open else lo <= v) and v <= hi):
        raise ValidationError(f"{key} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return float(v)


def within_ms(body: dict, key: str = "within_s") -> int:
    return int(number(body, key, 0, MAX_WITHIN_S) * 1000)


def optional_geofence(body: dict, key: str = "geofence_id") -> str | None:
    gid = body.get(key)
    if gid is not None and (not isinstance(gid, str) or not gid):
        raise ValidationError(f"{key} must be a non-empty string")
    return gid


def required_geofence(body: dict) -> str:
    gid = optional_geofence(body)
    if gid is None:
        raise ValidationError("geofence_id is required")
    return gid


def event_spec(spec: object, where: str, any_type: bool = False, entities: bool = False) -> EventSpec:
    if not isinstance(spec, dict):
        raise ValidationError(f"{where}: must be an object with event_type")
    etype = spec.get("event_type")
    if not (etype in EVENT_TYPES or (any_type and etype is None)):
        raise ValidationError(f"{where}: needs event_type one of {', '.join(EVENT_TYPES)}")
    gid = optional_geofence(spec)
    allowed = {"event_type", "geofence_id"} | ({"entity_prefix", "entity_glob", "attributes"} if entities else set())
    if set(spec) - allowed:
        raise ValidationError(f"{where}: unknown field(s) {sorted(set(spec) - allowed)}")
    kw: dict = {}
    for key in ("entity_prefix", "entity_glob"):
        v = spec.get(key)
        if v is not None and (not isinstance(v, str) or not v or len(v) > MAX_FILTER_CHARS):
            raise ValidationError(f"{where}: {key} must be a string of 1-{MAX_FILTER_CHARS} characters")
        kw[key] = v
    attrs = spec.get("attributes") or {}
    if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, str) and k
                                              for k, v in attrs.items()) or len(attrs) > 20:
        raise ValidationError(f"{where}: attributes must be an object of up to 20 string values")
    return EventSpec(etype, gid, attributes=tuple(sorted(attrs.items())), **kw)
