"""Kinds about being somewhere, or not being heard from: time_of_day ("inside G between 22:00
and 06:00 UTC", once per entity and day) and track_gap (no location update for T). Pure.

Hours are whole UTC hours, from `from_hour` included to `to_hour` excluded (22 to 6: 22:00:00
is in, 06:00:00 is out). A track gap fires once the silence reaches T exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from geoflux.errors import ValidationError
from streams.cep.kinds.base import Kind
from streams.cep.outputs import Match
from streams.cep.specs import EventSpec, required_geofence, within_ms

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
EPOCH_DAY = datetime(1970, 1, 1).toordinal()  # the day ordinal of epoch millisecond 0


def _hour_and_day(ms: int) -> tuple[int, int]:
    dt = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return dt.hour, dt.toordinal()


@dataclass(frozen=True, slots=True)
class TimeOfDayParams:
    geofence_id: str
    from_hour: int
    to_hour: int

    def in_hours(self, hour: int) -> bool:
        if self.from_hour < self.to_hour:
            return self.from_hour <= hour < self.to_hour
        return hour >= self.from_hour or hour < self.to_hour  # a window across midnight


class TimeOfDay(Kind):
    """State: [inside (0/1), the ENTER's event id, the day (ordinal) it last fired, ENTER time]."""

    name, timer = "time_of_day", "clock"

    def parse(self, body: dict) -> TimeOfDayParams:
        gid = required_geofence(body)
        fh, th = body.get("from_hour"), body.get("to_hour")
        if not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 24 for h in (fh, th)) or fh == th:
            raise ValidationError("from_hour and to_hour must be different integers 0-24 (UTC)")
        return TimeOfDayParams(gid, fh, th)

    def initialize(self, p):
        return [0, "", 0, 0]

    def specs(self, p):
        return ((EventSpec("ENTER", p.params.geofence_id), True), (EventSpec("EXIT", p.params.geofence_id), False))

    def feed(self, p, st, ev, key):
        if ev["geofence_id"] != p.params.geofence_id:
            return []
        if ev["event_type"] == "EXIT":
            st[0] = 0
            return []
        if ev["event_type"] != "ENTER":
            return []
        st[0], st[1], st[3] = 1, ev["event_id"], ev["ts_ms"]
        hour, day = _hour_and_day(ev["ts_ms"])
        if p.params.in_hours(hour) and st[2] != day:
            st[2] = day
            return [Match(p, key, (ev["event_id"],), ev["ts_ms"], ev["ts_ms"], {"hour": str(hour)})]
        return []

    def tick(self, p, st, now, settled, key):
        if not st[0]:
            return []
        hour, day = _hour_and_day(now)
        if p.params.in_hours(hour) and st[2] != day:
            st[2] = day
            return [Match(p, key, (st[1],), now - now % HOUR_MS, now, {"hour": str(hour), "fired_by": "timer"})]
        return []

    def due(self, p, st):
        """While inside: the first time from the ENTER on that is within the hours on a day it
        has not fired yet (hours are whole, so an hour boundary or the ENTER itself). Once it
        has fired on the ENTER's day or later, the search starts the day after: a day before
        it is past, and a due time in the past would wake the key on every tick."""
        if not st[0]:
            return None
        t = st[3]
        if st[2] >= _hour_and_day(t)[1]:
            t = (st[2] + 1 - EPOCH_DAY) * DAY_MS  # midnight after the day it last fired
        for i in range(49):
            cand = t if i == 0 else t - t % HOUR_MS + i * HOUR_MS
            hour, day = _hour_and_day(cand)
            if p.params.in_hours(hour) and day != st[2]:
                return cand
        return None

    def empty(self, st):
        return not st[0] and not st[2]

    def result(self, p, st):
        return {"inside": bool(st[0]), "fired_day": st[2]}


@dataclass(frozen=True, slots=True)
class TrackGapParams:
    within_ms: int


class TrackGap(Kind):
    """State: [newest location time, the newest time it fired for]."""

    name, timer, locations = "track_gap", "clock", True

    def parse(self, body: dict) -> TrackGapParams:
        return TrackGapParams(within_ms(body))

    def initialize(self, p):
        return [0, 0]

    def on_location(self, p, st, loc, key):
        st[0] = max(st[0], loc["ts_ms"])
        return []

    def tick(self, p, st, now, settled, key):
        last = st[0]
        if last and now - last >= p.params.within_ms and st[1] != last:
            st[1] = last
            return [Match(p, key, (), last, last + p.params.within_ms, {"silent_since_ms": str(last)})]
        return []

    def due(self, p, st):
        return None if not st[0] or st[1] == st[0] else st[0] + p.params.within_ms

    def empty(self, st):
        return not st[0]

    def result(self, p, st):
        return {"last_location_ms": st[0], "fired_for_ms": st[1]}
