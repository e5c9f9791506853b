"""Per-entity geofence membership: the state machine behind ENTER / EXIT / DWELL. Pure: no I/O.

Rules (all times are event time, epoch ms):
- Updates are applied in timestamp order. An entity's history keeps every update of its newest
  `lateness_ms` and the one before them (what an update at the window's start follows), at most
  `max_points` of them (`streams/entity_history.py`).
- An update older than the entity's newest by no more than `lateness_ms` is placed between its
  kept neighbours, and membership is derived again, in order, from there on. What that changes
  is emitted now, so every (entity, fence) pair still alternates in stream order:
  * an excursion the neighbours did not show (out of a fence and back, or into one and out)
    becomes a balanced pair: the first transition at the late update's time, the second at the
    update where in-order membership agrees with what was recorded again;
  * if it never agrees again (every later update lay in the fence's hysteresis band), the one
    transition at the late update's time, and membership changes;
  * a transition the neighbours already recorded keeps its recorded time (the late update only
    shows it happened earlier);
  * a pair that cannot be appended without breaking alternation (the entity has since changed
    state in that fence, so its stream is already past the excursion) rejects the update as
    `late_excursion`, with the reason. A brief visit found late gets no DWELL.
- An update older than everything kept: if nothing was ever dropped from the history it is the
  entity's first update, and starts its trajectory (the entity was in no fence before it): an
  ENTER it implies is emitted, balanced by an EXIT at the next update if the entity was outside
  by then, or keeping the recorded time of the ENTER already emitted if it was still inside. If
  the cap dropped updates within the window, what came before it is unknown: rejected as
  `history_exceeded`, naming the cap.
- Older than `lateness_ms`: rejected as `late`, with the reason.
- The same timestamp and position again is a duplicate: no events. The same timestamp with
  another position is rejected as a conflicting duplicate.
- A rejected update changes nothing; the evaluator dead-letters it with its kind as the class.
- ENTER needs the point INSIDE (at least `hysteresis_m` inside, if the fence has one); EXIT needs
  it OUTSIDE (at least `hysteresis_m` outside). The band between changes nothing.
- DWELL fires once per stay at `entered + dwell_seconds`: on the entity's own update at or past
  that time while still inside, or by the timer when the wall clock passes it (a silent
  entity is presumed to stay where it was last seen).
- Fence edits, deletions and a restart all reconcile membership with the entity's last known
  position under the current fences; those events carry the fence version as their source.
  Late updates are placed under the current fences too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from geoflux.keys import scoped
from streams.entity_history import History, Seen
from streams.fence_index import FenceIndex, Zone
from streams.late_replay import BEHIND, ENTER, EXIT, Replay, replay

DWELL = "DWELL"
REJECTED = ("late", "conflict", "history_exceeded", "late_excursion")


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
class EntityState:
    entity_id: str
    tenant_id: str
    memberships: dict[str, Membership] = field(default_factory=dict)
    history: History = field(default_factory=History)
    attributes: dict[str, str] = field(default_factory=dict)  # joined from geo.entities

    @property
    def last(self) -> Seen | None:
        return self.history[-1] if len(self.history) else None


def event_id(tenant_id: str, entity_id: str, geofence_id: str, event_type: str, source: str) -> str:
    """Deterministic: the same cause always yields the same id, so redeliveries are recognisable."""
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
    kind: str  # applied | duplicate | one of REJECTED
    transitions: tuple[Transition, ...] = ()
    reason: str | None = None

    @property
    def rejected(self) -> bool:
        return self.kind in REJECTED


_APPLIED, _DUPLICATE = Outcome("applied"), Outcome("duplicate")  # immutable, so shared


class MembershipMachine:
    def __init__(self, index: FenceIndex, lateness_ms: int, max_points: int = 1000) -> None:
        self.index = index
        self.lateness_ms = lateness_ms
        self.max_points = max(1, max_points)

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _own(zones: dict[str, Zone], tenant_id: str) -> dict[str, Zone]:
        """Fences only ever apply to their own tenant's entities. `zones` is keyed by scoped
        fence id (tenant/id); the result by the tenant's own fence ids."""
        if not zones:
            return zones  # most points lie in no fence
        prefix = scoped(tenant_id, "")
        n = len(prefix)
        return {key[n:]: zone for key, zone in zones.items() if key.startswith(prefix)}

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
        n = len(hist.ts)
        if not n or upd.ts_ms > hist.ts[-1]:  # in order, the common case: no search, nothing kept to match
            return self._applied(state, upd, self._own(zones, state.tenant_id))
        i = hist.find(upd.ts_ms)
        if i < n and hist.ts[i] == upd.ts_ms:
            if (hist.lon[i], hist.lat[i]) == (upd.lon, upd.lat):
                return _DUPLICATE
            return Outcome("conflict", reason=(
                f"conflicting duplicate: entity {upd.entity_id} already reported "
                f"({hist.lon[i]}, {hist.lat[i]}) at ts {upd.ts_ms}"))
        zones = self._own(zones, state.tenant_id)
        if len(hist) and upd.ts_ms < hist.ts[-1]:
            behind = hist.ts[-1] - upd.ts_ms
            if behind > self.lateness_ms:
                return Outcome("late", reason=(
                    f"late: {behind} ms behind entity {upd.entity_id}'s newest update "
                    f"(allowed lateness {self.lateness_ms} ms)"))
            return self._place_late(state, upd, zones, i)
        return self._applied(state, upd, zones)

    def _applied(self, state: EntityState, upd: Update, zones: dict[str, Zone]) -> Outcome:
        out = self._advance(state, upd, zones)
        return Outcome("applied", tuple(out)) if out else _APPLIED  # most updates change nothing

    def _advance(self, state: EntityState, upd: Update, zones: dict[str, Zone]) -> list[Transition]:
        out: list[Transition] = []
        src = f"loc:{upd.ts_ms}"
        if not (zones or state.memberships):  # outside every fence before and after: no events
            state.history.append(upd.ts_ms, upd.lon, upd.lat, ())
            state.history.trim(self.lateness_ms, self.max_points)
            return out
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
        state.history.append(upd.ts_ms, upd.lon, upd.lat, tuple(sorted(state.memberships)))
        state.history.trim(self.lateness_ms, self.max_points)
        return out

    def _place_late(self, state: EntityState, upd: Update, zones: dict[str, Zone],
                    i: int) -> Outcome:
        hist = state.history
        if i == 0 and not hist.complete:
            return Outcome("history_exceeded", reason=(
                f"history exceeded: entity {upd.entity_id}'s update at ts {upd.ts_ms} is older "
                f"than every update kept for it (from ts {hist.ts[0]}; at most {self.max_points} "
                "are kept per entity, GEOFLUX_GEOFENCE_HISTORY_MAX_POINTS): what came before it "
                "is unknown"))
        before = hist.inside[i - 1] if i else ()  # an entity's first update follows no fence
        at_late = self._next_inside(before, zones)
        later = self._zones_from(hist, i, state.tenant_id)
        replays = []
        for gid in sorted(set(before) ^ at_late):
            fence = self._fence(state, gid)
            if fence is None:
                continue  # deleted: reconcile has ended the membership already
            r = replay(hist, gid, gid in before, i, later, gid in state.memberships)
            if r.refused:
                return Outcome("late_excursion", reason=self._refusal(upd, r))
            replays.append(r)
        out: list[Transition] = []
        for r in replays:
            for j in r.flips:
                hist.set_inside(j, tuple(sorted(set(hist.inside[j]) ^ {r.geofence_id})))
            if r.member is True:
                self._enter(state, r.geofence_id, upd.ts_ms)
            elif r.member is False:
                del state.memberships[r.geofence_id]
            version = self._fence(state, r.geofence_id).version
            for kind, j in r.events:
                if j is None:
                    out.append(self._t(kind, state, r.geofence_id, version, upd.lon, upd.lat,
                                       upd.ts_ms, f"loc:{upd.ts_ms}", "late update"))
                else:
                    tag = "resume" if kind == ENTER else "leave"
                    out.append(self._t(kind, state, r.geofence_id, version, hist.lon[j],
                                       hist.lat[j], hist.ts[j], f"late:{upd.ts_ms}:{tag}",
                                       "late update"))
        hist.insert(i, upd.ts_ms, upd.lon, upd.lat, tuple(sorted(at_late)))
        hist.trim(self.lateness_ms, self.max_points)
        return Outcome("applied", tuple(out))

    @staticmethod
    def _refusal(upd: Update, r: Replay) -> str:
        if r.refused == BEHIND:
            return (f"late update at ts {upd.ts_ms} shows an excursion ({r.first} then {r.back}) "
                    f"in fence {r.geofence_id} before entity {upd.entity_id}'s {r.first} of it "
                    "that was already emitted: appending it now would break ENTER/EXIT alternation")
        return (f"late update at ts {upd.ts_ms}: its {r.first} of fence {r.geofence_id} cannot be "
                f"placed in order: the fence changed since entity {upd.entity_id}'s later "
                "updates were evaluated")

    def _zones_from(self, hist: History, i: int, tenant_id: str) -> Callable[[int], dict[str, Zone]]:
        """Zones of the kept points from `i` on, looked up in growing chunks as asked for: a
        replay usually stops at the first point after the late one."""
        cache: dict[int, dict[str, Zone]] = {}

        def at(j: int) -> dict[str, Zone]:
            if j not in cache:
                end = min(len(hist), j + max(4, len(cache)))
                for k, z in enumerate(self.index.zones(hist.lon[j:end], hist.lat[j:end]), j):
                    cache[k] = self._own(z, tenant_id)
            return cache[j]
        return at

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
            state.history.set_inside(-1, tuple(sorted(state.memberships)))
        return out
