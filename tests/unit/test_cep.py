"""CEP kinds, table-driven: positive, negative, at the window boundary, out of order,
overlapping matches. `feed` drives one kind directly (arrival order); `KeyRun` drives a key
through the engine (event-time order, lateness, timers)."""

import pytest

from geoflux.errors import ValidationError
from streams.cep.engine import Engine
from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState
from streams.cep.outputs import Aggregate
from streams.cep.patterns import parse_pattern, pattern_alert_rule

BASE = {"pattern_id": "p", "tenant_id": "t", "severity": "high"}


def ev(i, etype, gid, ts, entity="e1"):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity, "tenant_id": "t", "lon": 0.0, "lat": 0.0, "attributes": {}}


def feed(pattern, events, key="e1"):
    """The kind alone, in arrival order."""
    st, out = pattern.impl.initialize(pattern), []
    for e in events:
        out += pattern.impl.feed(pattern, st, e, key)
    return out, st


class KeyRun:
    """One key's state driven through the engine, as the stage drives it."""

    def __init__(self, *patterns, key="e1"):
        self.engine = Engine(PatternTable(patterns))
        self.ks = KeyState("t", key)
        self.late: list[str] = []

    def send(self, events) -> list:
        out = []
        for e in events:
            got, late = self.engine.on_event(self.ks, e)
            out += got
            self.late += [e["event_id"]] if late else []
        return out

    def locate(self, ts, lon=0.0, lat=0.0) -> list:
        got, late = self.engine.on_location(self.ks, {"ts_ms": ts, "lon": lon, "lat": lat, "entity_id": self.ks.subject})
        return got

    def tick(self, now) -> list:
        return self.engine.on_tick(self.ks, now)

    def state(self, pattern):
        entry = self.ks.patterns.get(pattern.pattern_id)
        return entry[1] if entry else None

    def held(self, pattern):
        return self.ks.buffers.get(pattern.lateness_ms, [None, []])[1]


SEQ = parse_pattern({**BASE, "kind": "sequence", "within_s": 10,
                     "steps": [{"event_type": "ENTER", "geofence_id": "A"},
                               {"event_type": "ENTER", "geofence_id": "B"}],
                     "not_between": [{"event_type": "ENTER", "geofence_id": "X"}]})


@pytest.mark.parametrize("events,expected", [
    ([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 5000)], [("ev1", "ev2")]),
    ([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 10_000)], [("ev1", "ev2")]),  # exactly at T
    ([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 10_001)], []),  # just past T
    ([ev(1, "ENTER", "B", 0), ev(2, "ENTER", "A", 1000)], []),  # wrong order
    ([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "X", 1), ev(3, "ENTER", "B", 2)], []),  # not between
    ([ev(1, "ENTER", "A", 0), ev(2, "EXIT", "A", 1), ev(3, "ENTER", "B", 2)], [("ev1", "ev3")]),
    # skip past last: the second A does not pair with the same B again
    ([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "A", 1), ev(3, "ENTER", "B", 2), ev(4, "ENTER", "B", 3)],
     [("ev1", "ev3")]),
])
def test_sequence(events, expected):
    assert [m.event_ids for m in feed(SEQ, events)[0]] == expected


def test_sequence_overlaps_allowed():
    p = parse_pattern({**SEQ.body, "overlap": "allow"})
    out, _ = feed(p, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "A", 1), ev(3, "ENTER", "B", 2)])
    assert [m.event_ids for m in out] == [("ev1", "ev3"), ("ev2", "ev3")]
    assert len({m.match_id for m in out}) == 2


ABS = parse_pattern({**BASE, "kind": "absence", "within_s": 60,
                     "trigger": {"event_type": "ENTER", "geofence_id": "A"},
                     "expected": {"event_type": "ENTER", "geofence_id": "B"}})


def test_absence_fires_on_timer_for_a_silent_entity_and_not_when_expected_arrives():
    run = KeyRun(ABS)
    out = run.send([ev(1, "ENTER", "A", 0)])
    # the clock must pass the deadline (60 s) by the lateness (5 s): an ENTER B at 60 s could still come
    assert run.engine.due(run.ks) == 5_000  # first the held ENTER A is released
    assert out == [] and run.tick(5_000) == [] and run.engine.due(run.ks) == 65_000
    assert run.tick(64_999) == []
    fired = run.tick(65_000)
    assert [(m.event_ids, m.end_ms) for m in fired] == [(("ev1",), 60_000)]
    assert run.tick(120_000) == [] and run.engine.due(run.ks) is None  # once
    run = KeyRun(ABS)
    out = run.send([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 59_000)])
    assert out == [] and run.tick(1_000_000) == []


def test_absence_proven_by_a_later_event():
    out, _ = feed(ABS, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "C", 61_000)])
    assert [m.detail["proven_by"] for m in out] == ["ev2"]


def test_dwell_threshold_is_absence_of_exit():
    p = parse_pattern({**BASE, "kind": "absence", "within_s": 30,
                       "trigger": {"event_type": "ENTER", "geofence_id": "Z"},
                       "expected": {"event_type": "EXIT", "geofence_id": "Z"}})
    run = KeyRun(p)
    out = run.send([ev(1, "ENTER", "Z", 0), ev(2, "EXIT", "Z", 10_000), ev(3, "ENTER", "Z", 20_000)])
    assert out == [] and run.tick(54_999) == []
    assert [m.event_ids for m in run.tick(55_000)] == [("ev3",)]


COUNT = parse_pattern({**BASE, "kind": "count", "within_s": 3600, "at_least": 3,
                       "event": {"event_type": "EXIT"}})


@pytest.mark.parametrize("times,expected", [
    ([0, 1000, 2000], 1),
    ([0, 1000, 3_600_000], 0),  # the first fell out of the sliding hour
    ([0, 1, 2, 3, 4, 5], 2),  # skip past last: 3 + 3
])
def test_loitering_count_sliding(times, expected):
    out, _ = feed(COUNT, [ev(i, "EXIT", "G", t) for i, t in enumerate(times)])
    assert len(out) == expected
    assert all(m.key == "e1|G" for m in out)  # per entity and geofence


def test_count_keeps_fences_apart():
    out, _ = feed(COUNT, [ev(1, "EXIT", "G", 0), ev(2, "EXIT", "H", 1), ev(3, "EXIT", "G", 2)])
    assert out == []


CONVOY = parse_pattern({**BASE, "kind": "comovement", "within_s": 60, "at_least": 3})


def test_convoy_needs_distinct_entities_within_t():
    evs = [ev(1, "ENTER", "G", 0, "a"), ev(2, "ENTER", "G", 10_000, "a"),
           ev(3, "ENTER", "G", 20_000, "b"), ev(4, "ENTER", "G", 50_000, "c")]
    out, _ = feed(CONVOY, evs, key="G")
    assert len(out) == 1 and out[0].detail["entities"] == "a,b,c"
    late, _ = feed(CONVOY, [ev(1, "ENTER", "G", 0, "a"), ev(2, "ENTER", "G", 30_000, "b"),
                            ev(3, "ENTER", "G", 61_000, "c")], key="G")
    assert late == []


def test_track_gap():
    p = parse_pattern({**BASE, "kind": "track_gap", "within_s": 120})
    run = KeyRun(p)
    run.locate(1_000)
    assert run.engine.due(run.ks) == 121_000
    assert run.tick(120_999) == []
    assert len(run.tick(121_000)) == 1
    assert run.tick(500_000) == [] and run.engine.due(run.ks) is None  # once per gap
    run.locate(600_000)
    assert len(run.tick(721_000)) == 1


def test_time_of_day_on_enter_and_by_timer():
    p = parse_pattern({**BASE, "kind": "time_of_day", "geofence_id": "G", "from_hour": 22, "to_hour": 6})
    night = 1_764_028_800_000 + 23 * 3_600_000  # 2025-11-25T23:00Z
    out, _ = feed(p, [ev(1, "ENTER", "G", night)])
    assert len(out) == 1
    noon = night - 11 * 3_600_000
    run = KeyRun(p)
    assert run.send([ev(1, "ENTER", "G", noon)]) == [] and run.tick(noon + 3_600_000) == []
    assert run.engine.due(run.ks) == noon + 10 * 3_600_000  # 22:00
    assert run.tick(noon + 10 * 3_600_000 - 1) == []
    assert len(run.tick(noon + 10 * 3_600_000 + 1)) == 1  # 22:00 came, still inside
    assert run.tick(noon + 11 * 3_600_000) == []  # once a day


@pytest.mark.parametrize("change,reason", [
    ({"kind": "teleport"}, "kind must be one of"),
    ({"kind": "sequence", "within_s": 10, "steps": [{"event_type": "ENTER"}]}, "2 or more"),
    ({"kind": "sequence", "within_s": 0, "steps": []}, "within_s"),
    ({"kind": "count", "within_s": 5, "event": {"event_type": "LEAVE"}, "at_least": 2}, "event_type"),
    ({"kind": "comovement", "within_s": 5, "at_least": 1}, "at_least 2"),
    ({"kind": "time_of_day", "geofence_id": "G", "from_hour": 5, "to_hour": 5}, "different"),
    ({"kind": "absence", "within_s": 5, "trigger": {"event_type": "ENTER"}, "overlap": "x",
      "expected": {"event_type": "EXIT"}}, "overlap"),
])
def test_bad_patterns_have_reasons(change, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_pattern({**BASE, **change})


def test_match_ids_are_deterministic():
    a, _ = feed(SEQ, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 1)])
    b, _ = feed(SEQ, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 1)])
    assert a[0].match_id == b[0].match_id


def agg(window, **kw):
    return parse_pattern({**BASE, "kind": "aggregate", "window": window, **kw})


def closed(outs):
    return [(o.window[0], o.window[3], o.window[4], o.window[6])
            for o in outs if isinstance(o, Aggregate) and o.closed]


def test_tumbling_windows_close_on_event_time():
    p = agg({"type": "tumbling", "size_s": 60})
    outs, _ = feed(p, [ev(i, k, "G", t) for i, (t, k) in enumerate(
        [(0, "ENTER"), (10_000, "ENTER"), (59_999, "EXIT"), (60_000, "ENTER"), (130_000, "EXIT")])], "G")
    assert closed(outs) == [(0, 2, 1, 2), (60_000, 1, 0, 2)]


def test_hopping_windows_overlap():
    p = agg({"type": "hopping", "size_s": 60, "hop_s": 30})
    outs, _ = feed(p, [ev(i, "ENTER", "G", t) for i, t in enumerate([45_000, 200_000])], "G")
    assert sorted(s for s, *_ in closed(outs)) == [0, 30_000]  # 45 s falls in both


def test_session_windows_split_on_gap_and_late_events_are_counted():
    p = agg({"type": "session", "gap_s": 10}, lateness_s=5)
    outs, st = feed(p, [ev(i, "ENTER", "G", t) for i, t in enumerate([0, 5_000, 12_000, 40_000, 1_000, 80_000])], "G")
    assert [(s, e) for s, e, *_ in closed(outs)] == [(0, 3), (40_000, 1)]
    assert st["late"] == 1  # the event at 1 s arrived after 40 s was seen: beyond lateness


# -- event time: events held back until the watermark passes them --------------------------

LATE_SEQ = parse_pattern({**SEQ.body, "lateness_s": 5})


def test_out_of_order_within_lateness_matches_as_if_in_order():
    # B (t=3 s) arrives before A (t=1 s): applied in arrival order there is no match
    events = [ev(2, "ENTER", "B", 3000), ev(1, "ENTER", "A", 1000), ev(9, "ENTER", "Z", 9000)]
    assert [m.event_ids for m in feed(SEQ, events)[0]] == []
    run = KeyRun(LATE_SEQ)
    out = run.send(events)
    assert [m.event_ids for m in out] == [("ev1", "ev2")] and run.late == []
    assert run.ks.buffers[5000] == [4000, []]  # Z concerns no step: it only moved time on
    run.send([ev(8, "ENTER", "Z", 0)])
    assert run.late == []  # and is never late


@pytest.mark.parametrize("late_ts,is_late", [(4000, False), (3999, True)])
def test_lateness_boundary(late_ts, is_late):
    # the watermark after an event at 9 s with 5 s lateness is 4 s: 4 s is on time, 3.999 s late
    run = KeyRun(LATE_SEQ)
    run.send([ev(1, "ENTER", "Z", 9000), ev(2, "ENTER", "A", late_ts)])
    assert run.late == (["ev2"] if is_late else [])
    assert bool(run.state(LATE_SEQ)) is not is_late  # a late event is not applied


def test_zero_lateness_rejects_anything_older_than_the_newest():
    p = parse_pattern({**SEQ.body, "lateness_s": 0})
    run = KeyRun(p)
    out = run.send([ev(1, "ENTER", "A", 1000), ev(2, "ENTER", "B", 3000),
                    ev(3, "ENTER", "X", 2000), ev(4, "ENTER", "B", 3000)])
    assert [m.event_ids for m in out] == [("ev1", "ev2")]  # released at once: nothing held
    assert run.late == ["ev3"]  # older than the newest; an equal time (ev4) is not late


def test_a_quiet_key_is_released_once_the_input_clock_is_a_lateness_past_it():
    run = KeyRun(LATE_SEQ)
    out = run.send([ev(1, "ENTER", "A", 1000), ev(2, "ENTER", "B", 2000)])
    assert out == [] and len(run.held(LATE_SEQ)) == 2  # both still within lateness of the newest
    assert run.engine.due(run.ks) == 6_000
    assert run.tick(5_999) == [] and len(run.held(LATE_SEQ)) == 2
    assert run.tick(6_000) == [] and len(run.held(LATE_SEQ)) == 1  # A released alone
    fired = run.tick(7_000)
    assert [m.event_ids for m in fired] == [("ev1", "ev2")] and run.held(LATE_SEQ) == []


def test_absence_timer_waits_for_held_events_that_decide_it():
    p = parse_pattern({**ABS.body, "lateness_s": 5})
    run = KeyRun(p)
    run.send([ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 50_000)])
    # B at 50 s is held (within lateness of the newest) and disproves the absence: a clock past
    # the deadline (60 s) must not fire before B is applied
    assert run.held(p)[0][1] == "ev2" and run.state(p)
    assert run.tick(70_000) == []  # B released first: the absence never happened
    assert run.state(p) is None and run.held(p) == []
    run = KeyRun(p)
    run.send([ev(1, "ENTER", "A", 0)])
    assert run.tick(64_999) == []  # the deadline plus the lateness: not yet settled
    assert [m.event_ids for m in run.tick(65_000)] == [("ev1",)]


@pytest.mark.parametrize("pattern", [
    parse_pattern({**BASE, "kind": "count", "within_s": 10, "at_least": 3, "lateness_s": 30,
                   "event": {"event_type": "EXIT", "geofence_id": "G"}}),
    parse_pattern({**BASE, "kind": "comovement", "within_s": 10, "at_least": 3, "lateness_s": 30}),
])
def test_out_of_order_count_and_convoy_match_the_in_order_result(pattern):
    etype = pattern.params.event.event_type if pattern.kind == "count" else "ENTER"
    shuffled = [ev(3, etype, "G", 9000, "c"), ev(1, etype, "G", 1000, "a"), ev(2, etype, "G", 6000, "b"),
                ev(0, etype, "G", 12_000, "d")]
    in_time = sorted(shuffled, key=lambda e: e["ts_ms"])
    expected = [m.match_id for m in feed(pattern, in_time, key="G")[0]]
    assert [m.match_id for m in feed(pattern, shuffled, key="G")[0]] != expected  # order matters
    run = KeyRun(pattern, key="G")
    out = run.send(shuffled)
    released = run.tick(42_000)  # the clock a lateness past: released in time order
    assert out == [] and run.late == [] and expected
    assert [m.match_id for m in released] == expected


def test_pattern_alert_block_is_a_rule_and_bad_ones_are_422s():
    p = parse_pattern({**SEQ.body, "alert": {"channels": ["ops"], "title": "{pattern_id}: {key}"}})
    rule = pattern_alert_rule(p)
    assert (rule.rule_id, rule.source, rule.severity, rule.match) == (
        "cep-p", "cep", "high", {"pattern_id": ("p",)})
    assert pattern_alert_rule(SEQ) is None
    for alert, reason in [({"channels": []}, "channels"), ({"channels": ["a"], "title": "{nope}"}, "unknown"),
                          ({"channels": ["a"], "to": "x"}, "unknown field"), ("ops", "object")]:
        with pytest.raises(ValidationError, match=reason):
            parse_pattern({**SEQ.body, "alert": alert})


# -- event-time alignment of the re-key's input partitions ----------------------------------

from streams.cep.alignment import frontier, releasable, settled  # noqa: E402


def counts(held, seen, backlog, assigned, moved, now_s, align_ms, stall_s):
    """What the re-key writes of each partition's held records, as the stage asks."""
    upto = frontier(seen, backlog, {p for p, t in held.items() if t}, assigned, moved, now_s, align_ms, stall_s)
    return {p: releasable(((t, 0.0) for t in times), upto, settled(seen, assigned, align_ms), now_s - 0.5)
            for p, times in held.items()}


def test_rekey_writes_in_merged_event_time_order_and_holds_partitions_that_are_ahead():
    held = {0: [10_000, 11_000], 1: [10_500, 30_000, 31_000]}
    seen = {0: 11_000, 1: 31_000}
    moved, both = {0: 9.0, 1: 9.0}, {0, 1}
    # partition 0 still has records to give: nothing past its newest time (+1 s) goes out
    assert counts(held, seen, {0, 1}, both, moved, 10, 1000, 5) == {0: 2, 1: 1}
    # all read and partition 0 written out: partition 1 alone is left, and goes
    assert counts({0: [], 1: [30_000, 31_000]}, seen, set(), both, moved, 10, 1000, 5) == {0: 0, 1: 2}
    # partition 0 has unread records but was not fetched for a while (draining, it waits its
    # turn): it still holds the others, however long it takes
    assert counts({1: [30_000]}, seen, {0}, both, moved, 60, 1000, 5) == {1: 0}
    # partition 0 holds records but has stalled for 5 s with nothing unread: it no longer holds
    assert counts({0: [10_000], 1: [30_000]}, {0: 10_000, 1: 31_000}, set(), both, moved, 13.9, 1000, 5) == {0: 1, 1: 0}
    assert counts({0: [], 1: [30_000]}, {0: 10_000, 1: 31_000}, set(), both, moved, 14, 1000, 5) == {0: 0, 1: 1}
    # a partition that has delivered nothing yet holds everything (it may hold the oldest),
    # until it has been silent for 5 s (empty, or its lag is only transaction markers)
    assert counts({1: [30_000]}, {1: 31_000}, set(), both, moved, 10, 1000, 5) == {1: 0}
    assert counts({1: [30_000]}, {1: 31_000}, set(), both, moved, 14, 1000, 5) == {1: 1}
    # a held prefix only: a later record with an earlier time waits behind the held one
    assert counts({0: [50_000, 10_000]}, {0: 50_000, 1: 12_000}, {1}, both, moved, 10, 1000, 5) == {0: 0}
