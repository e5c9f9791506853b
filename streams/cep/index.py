"""Patterns indexed by tenant, event type and geofence. Pure.

An event is offered only to the patterns that listen to its (tenant, type, geofence) — not to
every pattern of its tenant — and a pattern only ever sees its own tenant's events. The answer
for a (tenant, type, geofence) is computed once and cached until the patterns change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterable

from streams.cep.patterns import Pattern
from streams.cep.specs import EventSpec

MAX_CACHED = 200_000


# (shape, starts, patterns, their ids): the ids too, so the engine can look a whole run up in
# C (dict.fromkeys, map) instead of one pattern at a time in Python
Run = tuple[str, bool, tuple[Pattern, ...], tuple[str, ...]]


def runs(pairs: Iterable[tuple[Pattern, bool]]) -> tuple[Run, ...]:
    """(pattern, starts) pairs as runs of adjacent ones alike in shape and starts, in order."""
    out: list[list] = []
    for p, starts in pairs:
        if out and out[-1][0] == p.shape and out[-1][1] == starts:
            out[-1][2].append(p)
        else:
            out.append([p.shape, starts, [p]])
    return tuple((shape, starts, tuple(ps), tuple(p.pattern_id for p in ps)) for shape, starts, ps in out)


@dataclass(frozen=True, slots=True)
class Route:
    """Who an event concerns. `direct`: kinds that order themselves (fed on arrival);
    `groups`: lateness -> (starters, continuers) of kinds fed in event-time order. A continuer
    only matters where its pattern already has state (e.g. absence's expected event)."""

    direct: tuple[Pattern, ...] = ()
    groups: dict[int, tuple[tuple[Pattern, ...], tuple[Pattern, ...]]] = field(default_factory=dict)
    # the same, as the engine walks them: runs of adjacent patterns alike in shape and in
    # `starts` ((shape, starts, patterns)), starters first — identical patterns (which share
    # state) are fed once per run, not looked at one by one
    offers: dict[int, tuple[Run, ...]] = field(default_factory=dict)
    direct_offers: tuple[Run, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.direct or self.groups)


NOWHERE = Route()


class PatternTable:
    def __init__(self, patterns: Iterable[Pattern] = ()) -> None:
        self.by_id: dict[tuple[str, str], Pattern] = {}
        self._specs: dict[str, dict[tuple[str | None, str | None], list[tuple[Pattern, bool]]]] = {}
        self._locations: dict[str, tuple[Pattern, ...]] = {}
        self._location_offers: dict[str, tuple[Run, ...]] = {}
        self._lateness: dict[str, frozenset[int]] = {}
        self._attributes: dict[str, frozenset[str]] = {}
        self._timed: dict[str, frozenset[str]] = {}
        self._publishing: dict[str, frozenset[str]] = {}
        self._cache: dict[tuple[str, str, str], Route] = {}
        for p in patterns:
            self.by_id[(p.tenant_id, p.pattern_id)] = p
        for p in self.by_id.values():
            buckets = self._specs.setdefault(p.tenant_id, {})
            for spec, starts in p.impl.specs(p):
                buckets.setdefault((spec.event_type, spec.geofence_id), []).append((p, starts))
            if p.impl.locations:
                self._locations[p.tenant_id] = (*self._locations.get(p.tenant_id, ()), p)
            if p.impl.ordered:
                self._lateness[p.tenant_id] = self._lateness.get(p.tenant_id, frozenset()) | {p.lateness_ms}
            if p.impl.timer is not None:
                self._timed[p.tenant_id] = self._timed.get(p.tenant_id, frozenset()) | {p.pattern_id}
            if p.impl.publishes:
                self._publishing[p.tenant_id] = self._publishing.get(p.tenant_id, frozenset()) | {p.pattern_id}
            keys = _attribute_keys(p.params)
            if keys:
                self._attributes[p.tenant_id] = self._attributes.get(p.tenant_id, frozenset()) | keys

    def get(self, tenant: str, pattern_id: str) -> Pattern | None:
        return self.by_id.get((tenant, pattern_id))

    def has_tenant(self, tenant: str) -> bool:
        return tenant in self._specs or tenant in self._locations

    def locations(self, tenant: str) -> tuple[Pattern, ...]:
        return self._locations.get(tenant, ())

    def location_offers(self, tenant: str) -> tuple[Run, ...]:
        offers = self._location_offers.get(tenant)
        if offers is None:
            offers = self._location_offers[tenant] = runs((p, True) for p in self.locations(tenant))
        return offers

    def latenesses(self, tenant: str) -> frozenset[int]:
        return self._lateness.get(tenant, frozenset())

    def timed(self, tenant: str) -> frozenset[str]:
        """Ids of the tenant's patterns that have timers."""
        return self._timed.get(tenant, frozenset())

    def publishing(self, tenant: str) -> frozenset[str]:
        """Ids of the tenant's patterns with open results to publish (aggregates)."""
        return self._publishing.get(tenant, frozenset())

    def attribute_keys(self, tenant: str) -> frozenset[str]:
        """The entity attributes the tenant's patterns filter on (held events keep only those)."""
        return self._attributes.get(tenant, frozenset())

    def route(self, tenant: str, event_type: str, geofence_id: str) -> Route:
        key = (tenant, event_type, geofence_id)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            found = self._cache[key] = self._route(tenant, event_type, geofence_id)
        return found

    def _route(self, tenant: str, event_type: str, geofence_id: str) -> Route:
        buckets = self._specs.get(tenant)
        if not buckets:
            return NOWHERE
        starts: dict[Pattern, bool] = {}
        for bucket in ((event_type, geofence_id), (event_type, None), (None, geofence_id), (None, None)):
            for p, s in buckets.get(bucket, ()):
                starts[p] = starts.get(p, False) or s
        if not starts:
            return NOWHERE
        direct = tuple(p for p in starts if not p.impl.ordered)
        groups: dict[int, tuple[list, list]] = {}
        for p, s in starts.items():
            if p.impl.ordered:
                groups.setdefault(p.lateness_ms, ([], []))[0 if s else 1].append(p)
        return Route(direct, {late: (tuple(a), tuple(b)) for late, (a, b) in groups.items()},
                     {late: runs([*((p, True) for p in a), *((p, False) for p in b)])
                      for late, (a, b) in groups.items()},
                     runs((p, True) for p in direct))


def _attribute_keys(params: object) -> frozenset[str]:
    found: set[str] = set()
    for f in fields(params):
        value = getattr(params, f.name)
        for spec in value if isinstance(value, tuple) else (value,):
            if isinstance(spec, EventSpec):
                found |= {k for k, _ in spec.attributes}
    return frozenset(found)


class PatternSet(dict):
    """The patterns side input's target (side-input key, opaque -> pattern). Counts changes,
    so the pattern index is rebuilt only when a pattern changed."""

    version = 0

    def __setitem__(self, key, value) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, key, *default):
        self.version += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args, **kw) -> None:
        self.version += 1
        super().update(*args, **kw)

    def setdefault(self, key, default=None):
        self.version += 1
        return super().setdefault(key, default)

    def popitem(self):
        self.version += 1
        return super().popitem()
