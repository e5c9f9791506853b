"""comovement: at least N distinct entities ENTER a geofence within T (a convoy), per geofence.
Pure.

Within T includes T: ENTERs exactly T apart are one convoy."""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.cep.kinds.base import MAX_PARTIALS, Kind
from streams.cep.outputs import Match
from streams.cep.specs import EventSpec, number, optional_geofence, within_ms


@dataclass(frozen=True, slots=True)
class ComovementParams:
    at_least: int
    within_ms: int
    geofence_id: str | None


class Comovement(Kind):
    """State: recent ENTERs [ts, entity, event id], one per entity (its newest)."""

    name, overlaps = "comovement", True

    def parse(self, body: dict) -> ComovementParams:
        at_least = int(number(body, "at_least", 0, 10_000))
        if at_least < 2:
            raise ValidationError("a convoy needs at_least 2 entities")
        return ComovementParams(at_least, within_ms(body), optional_geofence(body))

    def keyed_by(self, params) -> str:
        return "geofence"

    def specs(self, p):
        return ((EventSpec("ENTER", p.params.geofence_id), True),)

    def feed(self, p, st, ev, key):
        prm, ts, entity = p.params, ev["ts_ms"], ev["entity_id"]
        if ev["event_type"] != "ENTER" or (prm.geofence_id is not None and ev["geofence_id"] != prm.geofence_id):
            return []
        window = [w for w in st if ts - w[0] <= prm.within_ms and w[1] != entity]
        window.append([ts, entity, ev["event_id"]])
        out = []
        if len(window) >= prm.at_least:
            entities = sorted(w[1] for w in window)
            out.append(Match(p, key, tuple(w[2] for w in window), window[0][0], ts,
                             {"entities": ",".join(entities), "geofence_id": ev["geofence_id"]}))
            if p.overlap == "skip_past_last":
                window = []
        st[:] = window[-MAX_PARTIALS:]
        return out

    def result(self, p, st):
        return {"entities_in_window": len(st)}
