"""join: two events of DIFFERENT entities at the same geofence within T on event time — "a
truck and an unregistered car in the same depot within 2 minutes". Keyed per geofence, so
both sides are co-located by construction (both read from the geofence's partition). Pure.

Within T includes T, and within `max_distance_m` includes that distance.

    {"kind": "join", "within_s": 120, "geofence_id": "depot",          (optional: any fence)
     "left":  {"event_type": "ENTER", "entity_prefix": "truck-"},
     "right": {"event_type": "ENTER", "entity_glob": "car-*", "attributes": {"registered": "false"}},
     "max_distance_m": 200}                                             (optional relation)

A side picks events by type and entity: an id prefix, a glob (fnmatch, no regular
expressions: a tenant's filter cannot stall the stage), and attributes (what the event
carries today; entity attributes from the enrichment join plug in at `specs.attributes_of`).
With overlap skip_past_last (default) each event pairs at most once, with the earliest waiting
partner; with allow, with every partner in the window."""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.cep.kinds.base import MAX_PARTIALS, Kind
from streams.cep.kinds.stats import distance_m
from streams.cep.outputs import Match
from streams.cep.specs import EventSpec, event_spec, number, optional_geofence, within_ms


@dataclass(frozen=True, slots=True)
class JoinParams:
    left: EventSpec
    right: EventSpec
    within_ms: int
    geofence_id: str | None
    max_distance_m: float | None


class Join(Kind):
    """State: {"l": waiting left events, "r": waiting right events}, each [ts, entity, event
    id, lon, lat], oldest first."""

    name, overlaps = "join", True

    def parse(self, body: dict) -> JoinParams:
        sides = []
        for side in ("left", "right"):
            spec = body.get(side)
            if isinstance(spec, dict) and "geofence_id" in spec:
                raise ValidationError(f"{side}: geofence_id belongs to the pattern (both sides share the fence)")
            sides.append(event_spec(spec, side, entities=True))
        dist = body.get("max_distance_m")
        return JoinParams(sides[0], sides[1], within_ms(body), optional_geofence(body),
                          None if dist is None else number(body, "max_distance_m", 0, 1e7))

    def keyed_by(self, params) -> str:
        return "geofence"

    def initialize(self, p):
        return {"l": [], "r": []}

    def specs(self, p):
        gid = p.params.geofence_id
        return ((EventSpec(p.params.left.event_type, gid), True), (EventSpec(p.params.right.event_type, gid), True))

    def feed(self, p, st, ev, key):
        prm, ts = p.params, ev["ts_ms"]
        if prm.geofence_id is not None and ev["geofence_id"] != prm.geofence_id:
            return []
        for side in ("l", "r"):
            st[side] = [w for w in st[side] if ts - w[0] <= prm.within_ms]
        me = [ts, ev["entity_id"], ev["event_id"], ev.get("lon", 0.0), ev.get("lat", 0.0)]
        out = []
        # as a right partner first: when both sides take it, the earlier event is the left
        for mine, theirs, spec in (("r", "l", prm.right), ("l", "r", prm.left)):
            if not spec.matches(ev):
                continue
            partners = [w for w in st[theirs] if w[1] != me[1] and self._near(prm, w, me)]
            if p.overlap == "skip_past_last" and partners:
                st[theirs].remove(partners[0])
                out.append(self._match(p, key, ev, *((me, partners[0]) if mine == "l" else (partners[0], me))))
                return out  # paired once: this event is used up
            for w in partners:
                out.append(self._match(p, key, ev, *((me, w) if mine == "l" else (w, me))))
            st[mine] = (st[mine] + [me])[-MAX_PARTIALS:]
        return out

    @staticmethod
    def _near(prm: JoinParams, a: list, b: list) -> bool:
        return prm.max_distance_m is None or distance_m(a[3], a[4], b[3], b[4]) <= prm.max_distance_m

    @staticmethod
    def _match(p, key: str, ev: dict, left: list, right: list) -> Match:
        detail = {"geofence_id": ev["geofence_id"], "left_entity": left[1], "right_entity": right[1],
                  "gap_ms": str(abs(right[0] - left[0]))}
        if p.params.max_distance_m is not None:
            detail["distance_m"] = f"{distance_m(left[3], left[4], right[3], right[4]):.1f}"
        return Match(p, key, (left[2], right[2]), min(left[0], right[0]), max(left[0], right[0]), detail)

    def empty(self, st):
        return not st["l"] and not st["r"]

    def result(self, p, st):
        return {"waiting_left": len(st["l"]), "waiting_right": len(st["r"])}
