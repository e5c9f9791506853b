"""What CEP kinds produce: matches, window aggregates, and the retraction of a window that
merged into another: value objects with their topic records. Pure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.cep.patterns import Pattern

LATE = object()  # a kind's answer to an event older than what it has already settled


@dataclass(frozen=True, slots=True)
class Match:
    pattern: "Pattern"
    key: str  # the entity, the geofence, or entity|geofence (count per entity)
    event_ids: tuple[str, ...]
    start_ms: int
    end_ms: int
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def match_id(self) -> str:
        # tenant: two tenants' pattern, key and event ids may all be alike; shape, not version:
        # an edit that keeps the pattern's state (severity, alert) keeps its matches' identity
        raw = "\x1f".join([self.pattern.tenant_id, self.pattern.pattern_id, self.pattern.shape,
                           self.key, str(self.start_ms), *self.event_ids])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def for_pattern(self, p: "Pattern") -> "Match":
        return Match(p, self.key, self.event_ids, self.start_ms, self.end_ms, self.detail)

    def record(self) -> dict:
        p = self.pattern
        return {"match_id": self.match_id, "pattern_id": p.pattern_id, "pattern_version": p.version,
                "tenant_id": p.tenant_id, "key": self.key, "severity": p.severity,
                "event_ids": list(self.event_ids), "start_ms": self.start_ms, "end_ms": self.end_ms,
                "detail": {"kind": p.kind, **self.detail}}


# a window as kinds keep it: [start, end, last event, entries, exits, dwells, occupancy max, occupancy end]
START, END, LAST, ENTRIES, EXITS, DWELLS, OCC_MAX, OCC_END = range(8)


@dataclass(frozen=True, slots=True)
class Aggregate:
    pattern: "Pattern"
    geofence_id: str
    window: tuple[int, ...]
    closed: bool = False
    late: int = 0

    @property
    def key(self) -> str:
        return aggregate_key(self.pattern, self.geofence_id, self.window[START])

    def for_pattern(self, p: "Pattern") -> "Aggregate":
        return Aggregate(p, self.geofence_id, self.window, self.closed, self.late)

    def record(self) -> dict:
        w, p = self.window, self.pattern
        return {"pattern_id": p.pattern_id, "tenant_id": p.tenant_id, "geofence_id": self.geofence_id,
                "window": p.params.window, "start_ms": w[START], "end_ms": w[END],
                "entries": w[ENTRIES], "exits": w[EXITS], "dwells": w[DWELLS],
                "occupancy_max": w[OCC_MAX], "occupancy_end": w[OCC_END], "closed": self.closed,
                "late_events": self.late}


@dataclass(frozen=True, slots=True)
class AggregateGone:
    """A session window that merged into an earlier-starting one: its record is deleted."""

    pattern: "Pattern"
    geofence_id: str
    start_ms: int

    @property
    def key(self) -> str:
        return aggregate_key(self.pattern, self.geofence_id, self.start_ms)

    def for_pattern(self, p: "Pattern") -> "AggregateGone":
        return AggregateGone(p, self.geofence_id, self.start_ms)


def aggregate_key(p: "Pattern", geofence_id: str, start_ms: int) -> str:
    # tenant/pattern|geofence|start: tenants may share pattern and geofence ids; pattern ids and
    # starts hold no `|`, so a `|` inside the geofence id cannot make two keys alike
    return f"{p.tenant_id}/{p.pattern_id}|{geofence_id}|{start_ms}"
