"""speed (per entity, from geo.locations): the speed implied by two consecutive location
updates (by event time) over `max_speed_kmh` — teleports and GPS faults. The match carries the
evidence: both positions and times, the distance, the implied and the allowed speed. Pure.

False-positive guard: a jump shorter than `min_distance_m` (default 100 m) never fires, so GPS
jitter between updates a fraction of a second apart is not an "infinite speed". A spike (one
bad point, then back) is two jumps and two matches; a teleport (the track continues from the
new place) is one."""

from __future__ import annotations

import math
from dataclasses import dataclass

from streams.cep.kinds.base import Kind
from streams.cep.kinds.stats import distance_m
from streams.cep.outputs import LATE, Match
from streams.cep.specs import number


@dataclass(frozen=True, slots=True)
class SpeedParams:
    max_speed_kmh: float
    min_distance_m: float


class Speed(Kind):
    """State: [newest time, watermark, held points [[ts, lon, lat]], last applied point]. It
    orders its own input (locations, not geofence events) with the pattern's lateness."""

    name, ordered, timer, locations = "speed", False, "event", True

    def parse(self, body: dict) -> SpeedParams:
        return SpeedParams(number(body, "max_speed_kmh", 0, 1e6),
                           number(body, "min_distance_m", 0, 1e7, default=100, lo_open=False))

    def initialize(self, p):
        return [0, 0, [], []]

    def on_location(self, p, st, loc, key):
        ts = loc["ts_ms"]
        if ts < st[1]:
            return [LATE]
        held, at = st[2], len(st[2])
        while at and held[at - 1][0] > ts:
            at -= 1
        held.insert(at, [ts, loc["lon"], loc["lat"]])
        st[0] = max(st[0], ts)
        return self._release(p, st, st[0] - p.lateness_ms, key)

    def tick(self, p, st, now, settled, key):
        return self._release(p, st, min(settled, st[0]), key)

    def due(self, p, st):
        return st[2][0][0] if st[2] else None

    def _release(self, p, st, upto: int, key: str) -> list:
        out, held = [], st[2]
        n = 0
        while n < len(held) and held[n][0] <= upto:
            point, last = held[n], st[3]
            if last and point != last:
                out += self._check(p, last, point, key)
            st[3] = point
            n += 1
        del held[:n]
        st[1] = max(st[1], upto)
        return out

    @staticmethod
    def _check(p, a: list, b: list, key: str) -> list:
        metres = distance_m(a[1], a[2], b[1], b[2])
        if not metres >= p.params.min_distance_m:
            return []  # jitter (or an impossible coordinate: NaN never fires)
        seconds = (b[0] - a[0]) / 1000
        kmh = math.inf if seconds <= 0 else metres / seconds * 3.6
        if kmh <= p.params.max_speed_kmh:
            return []
        return [Match(p, key, (f"loc:{a[0]}", f"loc:{b[0]}"), a[0], b[0],
                      {"entity_id": key, "speed_kmh": f"{kmh:.1f}", "limit_kmh": f"{p.params.max_speed_kmh:g}",
                       "distance_m": f"{metres:.1f}", "seconds": f"{seconds:g}",
                       "from": f"{a[1]:.6f},{a[2]:.6f}", "to": f"{b[1]:.6f},{b[2]:.6f}"})]

    def empty(self, st):
        return not st[3] and not st[2]

    def result(self, p, st):
        return {"last_point": st[3], "held": len(st[2])}
