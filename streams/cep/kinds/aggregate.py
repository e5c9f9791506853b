"""aggregate: entries, exits, dwells and occupancy per geofence in tumbling, hopping or session
windows on event time, published while open (`closed: false`) and once closed. Pure.

Not ordered: events count into their windows as they arrive, and a window takes late events
until the pattern's watermark — its newest event time less `lateness_s`, or the stage's input
clock less `lateness_s`, whichever is later — passes its end. Then it closes, on the clock even
if the fence has gone quiet. An event older than the watermark is late: counted, not applied.
A session (gap_s) grows with every event within gap of it; an event within gap of two sessions
merges them into one (the later-starting one's record is deleted)."""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.cep.kinds.base import Kind
from streams.cep.outputs import (DWELLS, END, ENTRIES, EXITS, LAST, LATE, OCC_END, OCC_MAX, START, Aggregate,
                                 AggregateGone)
from streams.cep.specs import MAX_WITHIN_S, EventSpec, number, optional_geofence

_COLUMN = {"ENTER": ENTRIES, "EXIT": EXITS, "DWELL": DWELLS}
_STEP = {"ENTER": 1, "EXIT": -1}


@dataclass(frozen=True, slots=True)
class AggregateParams:
    window: str
    size_ms: int  # the window's length, or a session's gap
    hop_ms: int
    geofence_id: str | None


def window_starts(prm: AggregateParams, ts: int) -> list[int]:
    if prm.window == "tumbling":
        return [ts - ts % prm.size_ms]
    last = ts - ts % prm.hop_ms
    return [s for s in range(last - prm.size_ms + prm.hop_ms, last + 1, prm.hop_ms) if s <= ts < s + prm.size_ms]


class AggregateKind(Kind):
    """State: {"m": newest event time, "wm": watermark, "occ": occupancy, "late": late events,
    "w": open windows [start, end, last, entries, exits, dwells, occupancy max, occupancy end]}."""

    name, default_lateness_s, ordered, timer, publishes = "aggregate", 0, False, "event", True

    def parse(self, body: dict) -> AggregateParams:
        w = body.get("window")
        if not isinstance(w, dict) or w.get("type") not in ("tumbling", "hopping", "session"):
            raise ValidationError("window must be {type: tumbling | hopping | session, ...}")
        size = int(number(w, "gap_s" if w["type"] == "session" else "size_s", 0, MAX_WITHIN_S) * 1000)
        hop = 0
        if w["type"] == "hopping":
            hop = int(number(w, "hop_s", 0, MAX_WITHIN_S) * 1000)
            if hop > size or size // hop > 100:
                raise ValidationError("hop_s must be at most size_s, and size_s / hop_s at most 100")
        return AggregateParams(w["type"], size, hop, optional_geofence(body))

    def keyed_by(self, params) -> str:
        return "geofence"

    def specs(self, p):
        return ((EventSpec(None, p.params.geofence_id), True),)

    def initialize(self, p):
        return {"m": 0, "wm": 0, "occ": 0, "late": 0, "w": []}

    def feed(self, p, st, ev, key):
        prm, ts, etype = p.params, ev["ts_ms"], ev["event_type"]
        if prm.geofence_id is not None and ev["geofence_id"] != prm.geofence_id:
            return []
        if ts < st["wm"]:
            st["late"] += 1
            return [LATE]
        st["m"] = max(st["m"], ts)
        st["occ"] = max(0, st["occ"] + _STEP.get(etype, 0))
        out: list = []
        touched = self._session(p, st, ts, key, out) if prm.window == "session" else self._fixed(prm, st, ts)
        for w in touched:
            w[_COLUMN[etype]] += 1
            w[OCC_END] = st["occ"]
            w[OCC_MAX] = max(w[OCC_MAX], st["occ"])
        return out + self._close(p, st, st["m"] - p.lateness_ms, key)

    def publish(self, p, st, key):
        return [Aggregate(p, key, tuple(w), False, st["late"]) for w in sorted(st["w"])]

    @staticmethod
    def _fixed(prm: AggregateParams, st: dict, ts: int) -> list[list]:
        by_start = {w[START]: w for w in st["w"]}
        touched = []
        for s in window_starts(prm, ts):
            w = by_start.get(s)
            if w is None:
                w = [s, s + prm.size_ms, ts, 0, 0, 0, 0, 0]
                st["w"].append(w)
            w[LAST] = max(w[LAST], ts)
            touched.append(w)
        return touched

    @staticmethod
    def _session(p, st: dict, ts: int, key: str, out: list) -> list[list]:
        gap = p.params.size_ms
        near = [w for w in st["w"] if w[START] - gap < ts < w[LAST] + gap]
        if not near:
            w = [ts, ts + gap, ts, 0, 0, 0, 0, 0]
            st["w"].append(w)
            return [w]
        near.sort(key=lambda w: w[START])
        keep, first_start = near[0], near[0][START]
        for other in near[1:]:  # bridged: one session now
            for col in (ENTRIES, EXITS, DWELLS):
                keep[col] += other[col]
            keep[OCC_MAX] = max(keep[OCC_MAX], other[OCC_MAX])
            keep[LAST] = max(keep[LAST], other[LAST])
            st["w"].remove(other)
            out.append(AggregateGone(p, key, other[START]))
        keep[START], keep[LAST] = min(keep[START], ts), max(keep[LAST], ts)
        keep[END] = keep[LAST] + gap
        if keep[START] != first_start:  # grew backwards: its record moves to the new start
            out.append(AggregateGone(p, key, first_start))
        return [keep]

    def _close(self, p, st: dict, watermark: int, key: str) -> list:
        if watermark <= st["wm"]:
            return []
        st["wm"] = watermark
        done = [w for w in st["w"] if w[END] <= watermark]
        if not done:
            return []
        st["w"] = [w for w in st["w"] if w[END] > watermark]
        return [Aggregate(p, key, tuple(w), True, st["late"]) for w in sorted(done)]

    def tick(self, p, st, now, settled, key):
        return self._close(p, st, settled, key)

    def due(self, p, st):
        return min((w[END] for w in st["w"]), default=None)

    def empty(self, st):
        return False  # its watermark must outlive its windows: a closed window never reopens

    def result(self, p, st):
        return {"open_windows": len(st["w"]), "occupancy": st["occ"], "watermark_ms": st["wm"],
                "late_events": st["late"]}
