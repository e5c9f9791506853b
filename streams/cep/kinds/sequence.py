"""sequence: steps (2+) in order within T, optionally "and no X between"; absence: a trigger
and no expected event within T (route deviation; with expected = EXIT of the trigger's fence,
a dwell over a threshold). Both per entity. Pure.

Within T includes T: a sequence completed exactly T after its start matches, and an expected
event exactly at trigger + T arrives in time (no absence). An absence is proven by a later
event only past the deadline, or by the timer once the deadline itself is settled."""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError
from streams.cep.kinds.base import MAX_PARTIALS, Kind
from streams.cep.outputs import Match
from streams.cep.specs import EventSpec, event_spec, within_ms


@dataclass(frozen=True, slots=True)
class SequenceParams:
    steps: tuple[EventSpec, ...]
    not_between: tuple[EventSpec, ...]
    within_ms: int


class Sequence(Kind):
    """State: partial matches [start, next step, [event ids]], oldest first."""

    name, overlaps = "sequence", True

    def parse(self, body: dict) -> SequenceParams:
        within = within_ms(body)
        steps = body.get("steps")
        if not isinstance(steps, list) or len(steps) < 2:
            raise ValidationError("a sequence needs steps: a list of 2 or more events")
        nb = body.get("not_between") or []
        if not isinstance(nb, list):
            raise ValidationError("not_between must be a list of events")
        return SequenceParams(tuple(event_spec(s, f"steps[{i}]") for i, s in enumerate(steps)),
                              tuple(event_spec(s, f"not_between[{i}]") for i, s in enumerate(nb)),
                              within)

    def specs(self, p):
        yield p.params.steps[0], True
        for spec in (*p.params.steps[1:], *p.params.not_between):
            yield spec, False

    def feed(self, p, st, ev, key):
        prm, ts, eid = p.params, ev["ts_ms"], ev["event_id"]
        partials = [x for x in st if ts - x[0] <= prm.within_ms]
        if any(n.matches(ev) for n in prm.not_between):
            partials = []  # "and not X between": a started sequence is broken
        out, advanced = [], []
        for start, nxt, ids in partials:
            if prm.steps[nxt].matches(ev):
                nxt, ids = nxt + 1, ids + [eid]
                if nxt == len(prm.steps):
                    out.append(Match(p, key, tuple(ids), start, ts))
                    if p.overlap == "skip_past_last":
                        break  # the earliest match wins; every other partial is skipped past
                    continue
            advanced.append([start, nxt, ids])
        if prm.steps[0].matches(ev):
            advanced.append([ts, 1, [eid]])
        st[:] = [] if out and p.overlap == "skip_past_last" else advanced[-MAX_PARTIALS:]
        return out

    def result(self, p, st):
        return {"partials": len(st), "furthest_step": max((x[1] for x in st), default=0)}


@dataclass(frozen=True, slots=True)
class AbsenceParams:
    trigger: EventSpec
    expected: EventSpec
    within_ms: int


class Absence(Kind):
    """State: pending absences [start, deadline, trigger event id]."""

    name, overlaps, timer = "absence", True, "event"

    def parse(self, body: dict) -> AbsenceParams:
        return AbsenceParams(event_spec(body.get("trigger"), "trigger"),
                             event_spec(body.get("expected"), "expected"), within_ms(body))

    def specs(self, p):
        return ((p.params.trigger, True), (p.params.expected, False))

    def feed(self, p, st, ev, key):
        prm, ts, eid = p.params, ev["ts_ms"], ev["event_id"]
        # a later event of the pattern proves the absences whose deadline it is past
        out = [Match(p, key, (x[2],), x[0], x[1], {"proven_by": eid}) for x in st if x[1] < ts]
        pending = [x for x in st if x[1] >= ts]
        if prm.expected.matches(ev):
            pending = [x for x in pending if x[0] > ts]
        if prm.trigger.matches(ev) and (p.overlap == "allow" or not pending):
            pending.append([ts, ts + prm.within_ms, eid])
        st[:] = pending[-MAX_PARTIALS:]
        return out

    def tick(self, p, st, now, settled, key):
        out = [Match(p, key, (x[2],), x[0], x[1], {"fired_by": "timer"}) for x in st if x[1] <= settled]
        st[:] = [x for x in st if x[1] > settled]
        return out

    def due(self, p, st):
        return min((x[1] for x in st), default=None)

    def result(self, p, st):
        return {"pending": len(st), "next_deadline_ms": self.due(p, st)}
