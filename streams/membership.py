"""Per-entity geofence membership: the state machine behind ENTER / EXIT / DWELL. Pure: no I/O.

Rules (all times are event time, epoch ms):
- An update is applied in timestamp order. One older than the entity's newest by no more than
  `lateness_ms` is placed between its neighbours in the kept history: if it shows a brief
  excursion the neighbours did not (out of a fence both were in, or into one neither was in),
  the excursion is emitted as a balanced EXIT+ENTER or ENTER+EXIT pair, so every
  (entity, fence) pair still alternates in stream order. Transitions already emitted keep
  their recorded time, and an excursion that would break alternation (the entity has since
  changed state in that fence) is not emitted. Older than that: rejected as late, with the reason.
- The same timestamp and position again is a duplicate: no events. The same timestamp with
  another position is rejected as a conflicting duplicate.
- ENTER needs the point INSIDE (at least `hysteresis_m` inside, if the fence has one); EXIT needs
  it OUTSIDE (at least `hysteresis_m` outside). The band between changes nothing.
- DWELL fires once per stay at `entered + dwell_seconds`: on the entity's own update at or past
  that time while still inside, or by the timer when the wall clock passes it (a silent
  entity is presumed to stay where it was last seen).
- Fence edits, deletions and a restart all reconcile membership with the entity's last known
  position under the current fences; those events carry the fence version as their source.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field

from geoflux.keys import scoped
from streams.fence_index import FenceIndex, Zone

ENTER, EXIT, DWELL = "ENTER", "EXIT", "DWELL"


@dataclass(frozen=True, slots=True)
class Update:
    entity_id: str
    tenant_id: str
    lon: float
    lat: float
    ts_ms: int


@dataclass(slots=True)
class Membership:
    geofence_id: str
    geofence_version: int
    entered_ms: int
    dwell_due_ms: int | None = None
    dwell_fired: bool = False


@dataclass(slots=True)
class Seen:
    ts_ms: int
    lon: float
    lat: float
    inside: tuple[str, ...]


@dataclass(slots=True)
class EntityState:
    entity_id: str
    tenant_id: str
    memberships: dict[str, Membership] = field(default_factory=dict)
    history: list[Seen] = field(default_factory=list)

    @property
    def last(self) -> Seen | None:
        return self.history[-1] if self.history else None


def event_id(tenant_id: str, entity_id: str, geofence_id: str, event_type: str, source: str) -> str:
    """Deterministic: the same cause always yields the same id, so redeliveries are recognisable;
    the tenant is part of it, since entity and geofence ids are unique only within a tenant."""
    raw = "\x1f".join((tenant_id, entity_id, geofence_id, event_type, source)).encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Transition:
    event_type: str
    entity_id: str
    geofence_id: str
    geofence_version: int
    tenant_id: str
    lon: float
    lat: float
    ts_ms: int
    source: str
    reason: str | None = None

    @property
    def event_id(self) -> str:
        return event_id(self.tenant_id, self.entity_id, self.geofence_id, self.event_type, self.source)


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # applied | duplicate | late | conflict
    transitions: tuple[Transition, ...] = ()
    reason: str | None = None

    @property
    def rejected(self) -> bool:
        return self.kind in ("late", "conflict")


class MembershipMachine:
    def __init__(self, index: FenceIndex, lateness_ms: int, history_len: int = 8) -> None:
        self.index = index
        self.lateness_ms = lateness_ms
        self.history_len = max(1, history_len)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _own(zones: dict[str, Zone], tenant_id: str) -> dict[str, Zone]:
        """Fences only ever apply to their own tenant's entities. `zones` is keyed by scoped
        fence id (tenant/id); the result by the tenant's own fence ids."""
        prefix = scoped(tenant_id, "")
        return {key[len(prefix):]: zone for key, zone in zones.items() if key.startswith(prefix)}

    def _fence(self, state: EntityState, gid: str):
        return self.index.get(scoped(state.tenant_id, gid))

    def _t(self, kind: str, state: EntityState, gid: str, version: int, lon: float, lat: float,
           ts: int, source: str, reason: str | None = None) -> Transition:
        return Transition(kind, state.entity_id, gid, version, state.tenant_id, lon, lat, ts,
                          source, reason)

    def _enter(self, state: EntityState, gid: str, ts: int) -> Membership:
        fence = self._fence(state, gid)
        due = ts + int(fence.dwell_seconds * 1000) if fence.dwell_seconds else None
        m = Membership(gid, fence.version, ts, due)
        state.memberships[gid] = m
        return m

    @staticmethod
    def _next_inside(before: set[str] | tuple[str, ...], zones: dict[str, Zone]) -> set[str]:
        inside = {g for g in before if zones.get(g, Zone.OUTSIDE) != Zone.OUTSIDE}
        inside |= {g for g, z in zones.items() if z == Zone.INSIDE}
        return inside

    # -- location updates ---------------------------------------------------------------------
    def apply(self, state: EntityState, upd: Update, zones: dict[str, Zone]) -> Outcome:
        hist = state.history
        times = [s.ts_ms for s in hist]
        i = bisect.bisect_left(times, upd.ts_ms)
        if i < len(hist) and hist[i].ts_ms == upd.ts_ms:
            if (hist[i].lon, hist[i].lat) == (upd.lon, upd.lat):
                return Outcome("duplicate")
            return Outcome("conflict", reason=(
                f"conflicting duplicate: entity {upd.entity_id} already reported "
                f"({hist[i].lon}, {hist[i].lat}) at ts {upd.ts_ms}"))
        zones = self._own(zones, state.tenant_id)
        if hist and upd.ts_ms < hist[-1].ts_ms:
            behind = hist[-1].ts_ms - upd.ts_ms
            if behind > self.lateness_ms:
                return Outcome("late", reason=(
                    f"late: {behind} ms behind entity {upd.entity_id}'s newest update "
                    f"(allowed lateness {self.lateness_ms} ms)"))
            return Outcome("applied", tuple(self._insert_late(state, upd, zones, i)))
        return Outcome("applied", tuple(self._advance(state, upd, zones)))

    def _advance(self, state: EntityState, upd: Update, zones: dict[str, Zone]) -> list[Transition]:
        out: list[Transition] = []
        src = f"loc:{upd.ts_ms}"
        for gid in sorted(state.memberships):
            m = state.memberships[gid]
            if zones.get(gid, Zone.OUTSIDE) == Zone.OUTSIDE:
                del state.memberships[gid]
                out.append(self._t(EXIT, state, gid, m.geofence_version, upd.lon, upd.lat,
                                   upd.ts_ms, src))
            elif m.dwell_due_ms is not None and not m.dwell_fired and upd.ts_ms >= m.dwell_due_ms:
                m.dwell_fired = True
                out.append(self._t(DWELL, state, gid, m.geofence_version, upd.lon, upd.lat,
                                   m.dwell_due_ms, f"dwell:{m.entered_ms}"))
        for gid in sorted(zones):
            if zones[gid] == Zone.INSIDE and gid not in state.memberships:
                m = self._enter(state, gid, upd.ts_ms)
                out.append(self._t(ENTER, state, gid, m.geofence_version, upd.lon, upd.lat,
                                   upd.ts_ms, src))
        state.history.append(Seen(upd.ts_ms, upd.lon, upd.lat, tuple(sorted(state.memberships))))
        self._trim(state)
        return out

    def _insert_late(self, state: EntityState, upd: Update, zones: dict[str, Zone],
                     i: int) -> list[Transition]:
        hist = state.history
        nxt = hist[i]
        if i == 0:  # nothing known before it: no evidence of a transition
            hist.insert(0, Seen(upd.ts_ms, upd.lon, upd.lat, nxt.inside))
            return []
        prev = hist[i - 1]
        at_late = self._next_inside(prev.inside, zones)
        before, after = set(prev.inside), set(nxt.inside)
        out: list[Transition] = []
        # A pair is emitted only where it keeps the stream alternating for that fence: an
        # excursion out needs the entity inside now, a brief visit needs it outside now.
        current = set(state.memberships)
        for gid in sorted((before & after & current) - at_late):  # left and came back
            fence = self._fence(state, gid)
            if fence is None:
                continue
            out.append(self._t(EXIT, state, gid, fence.version, upd.lon, upd.lat, upd.ts_ms,
                               f"loc:{upd.ts_ms}", "late update"))
            out.append(self._t(ENTER, state, gid, fence.version, nxt.lon, nxt.lat, nxt.ts_ms,
                               f"late:{upd.ts_ms}:resume", "late update"))
        for gid in sorted(at_late - before - after - current):  # a visit no neighbour saw
            fence = self._fence(state, gid)
            if fence is None:
                continue
            out.append(self._t(ENTER, state, gid, fence.version, upd.lon, upd.lat, upd.ts_ms,
                               f"loc:{upd.ts_ms}", "late update"))
            out.append(self._t(EXIT, state, gid, fence.version, nxt.lon, nxt.lat, nxt.ts_ms,
                               f"late:{upd.ts_ms}:leave", "late update"))
        hist.insert(i, Seen(upd.ts_ms, upd.lon, upd.lat, tuple(sorted(at_late))))
        self._trim(state)
        return out

    def _trim(self, state: EntityState) -> None:
        hist = state.history
        horizon = hist[-1].ts_ms - self.lateness_ms
        keep = [s for s in hist if s.ts_ms >= horizon] or hist[-1:]
        state.history = keep[-self.history_len:]

    # -- timers and fence changes -------------------------------------------------------------
    def due_dwells(self, state: EntityState, now_ms: int) -> list[Transition]:
        last = state.last
        out = []
        for gid in sorted(state.memberships):
            m = state.memberships[gid]
            if m.dwell_due_ms is not None and not m.dwell_fired and now_ms >= m.dwell_due_ms:
                m.dwell_fired = True
                out.append(self._t(DWELL, state, gid, m.geofence_version, last.lon, last.lat,
                                   m.dwell_due_ms, f"dwell:{m.entered_ms}", "timer"))
        return out

    def next_dwell_due(self, state: EntityState) -> int | None:
        dues = [m.dwell_due_ms for m in state.memberships.values()
                if m.dwell_due_ms is not None and not m.dwell_fired]
        return min(dues) if dues else None

    def reconcile(self, state: EntityState, zones: dict[str, Zone], ts_ms: int,
                  only: set[str] | None = None) -> list[Transition]:
        """Makes membership agree with the last known position under the current fences.

        `zones` are those of `state.last`; `only` (scoped fence ids) limits it to the fences
        that changed.
        """
        last = state.last
        if last is None:
            return []
        zones = self._own(zones, state.tenant_id)
        if only is not None:
            prefix = scoped(state.tenant_id, "")
            only = {k[len(prefix):] for k in only if k.startswith(prefix)}
        out: list[Transition] = []
        for gid in sorted(state.memberships):
            if only is not None and gid not in only:
                continue
            m = state.memberships[gid]
            fence = self._fence(state, gid)
            if fence is None:
                del state.memberships[gid]
                out.append(self._t(EXIT, state, gid, m.geofence_version, last.lon, last.lat,
                                   ts_ms, f"fence-deleted:{gid}:v{m.geofence_version}",
                                   "geofence deleted"))
            elif zones.get(gid, Zone.OUTSIDE) == Zone.OUTSIDE:
                del state.memberships[gid]
                out.append(self._t(EXIT, state, gid, fence.version, last.lon, last.lat, ts_ms,
                                   f"fence:{gid}:v{fence.version}", "geofence changed"))
            elif m.geofence_version != fence.version:
                m.geofence_version = fence.version
                m.dwell_due_ms = (m.entered_ms + int(fence.dwell_seconds * 1000)
                                  if fence.dwell_seconds else None)
        for gid in sorted(zones):
            if only is not None and gid not in only:
                continue
            if zones[gid] == Zone.INSIDE and gid not in state.memberships:
                fence = self._fence(state, gid)
                m = self._enter(state, gid, max(ts_ms, last.ts_ms))
                out.append(self._t(ENTER, state, gid, fence.version, last.lon, last.lat,
                                   m.entered_ms, f"fence:{gid}:v{fence.version}",
                                   "geofence changed"))
        if out:
            last.inside = tuple(sorted(state.memberships))
        return out
