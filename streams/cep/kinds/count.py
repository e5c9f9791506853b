"""count: at least N matching events within a sliding T, per entity and geofence (loitering:
"3 EXITs of one fence within an hour") or per geofence (over all entities). Pure.

The window is half-open, [t - T, t): an event exactly T older than the newest has left it
(sequence, comovement and join, by contrast, include T)."""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.cep.kinds.base import Kind
from streams.cep.outputs import Match
from streams.cep.specs import EventSpec, event_spec, number, within_ms


@dataclass(frozen=True, slots=True)
class CountParams:
    event: EventSpec
    at_least: int
    within_ms: int
    per: str


class Count(Kind):
    """State: {geofence id (per entity) or "" (per geofence): [[ts, event id], ...]} — its own
    namespace, so a fence may be called anything (`max`, `held`, `|`, `/`)."""

    name, overlaps = "count", True

    def parse(self, body: dict) -> CountParams:
        per = body.get("per", "entity")
        if per not in ("entity", "geofence"):
            raise ValidationError("per must be entity or geofence")
        return CountParams(event_spec(body.get("event"), "event"), int(number(body, "at_least", 0, 10_000)),
                           within_ms(body), per)

    def keyed_by(self, params: CountParams) -> str:
        return params.per

    def initialize(self, p):
        return {}

    def specs(self, p):
        return ((p.params.event, True),)

    def feed(self, p, st, ev, key):
        prm, ts = p.params, ev["ts_ms"]
        if not prm.event.matches(ev):
            return []
        for sub in [s for s, w in st.items() if ts - w[-1][0] >= prm.within_ms]:
            del st[sub]  # every fence's window slides, not only the one this event is at
        sub = ev["geofence_id"] if prm.per == "entity" else ""
        window = [w for w in st.get(sub, ()) if ts - w[0] < prm.within_ms]
        window.append([ts, ev["event_id"]])
        out = []
        if len(window) >= prm.at_least:
            out.append(Match(p, key if prm.per == "geofence" else f"{key}|{sub}",
                             tuple(w[1] for w in window), window[0][0], ts,
                             {"count": str(len(window)), "geofence_id": ev["geofence_id"]}))
            if p.overlap == "skip_past_last":
                window = []
        if window:
            st[sub] = window[-prm.at_least * 4:]
        else:
            st.pop(sub, None)
        return out

    def result(self, p, st):
        return {"windows": len(st), "largest": max((len(w) for w in st.values()), default=0)}
