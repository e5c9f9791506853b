"""CEP operators, table-driven: positive, negative, at the window boundary, out of order,
overlapping matches."""

import pytest

from geoflux.errors import ValidationError
from streams.cep.operators import feed as in_order
from streams.cep.operators import on_event, on_location, on_tick
from streams.cep.patterns import parse_pattern, pattern_alert_rule

BASE = {"pattern_id": "p", "tenant_id": "t", "severity": "high"}


def ev(i, etype, gid, ts, entity="e1"):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity}


def feed(pattern, events, key="e1"):
    st, out = {}, []
    for e in events:
        out += on_event(pattern, st, e, key)
    return out, st


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
    out, st = feed(ABS, [ev(1, "ENTER", "A", 0)])
    # the clock must pass the deadline (60 s) by the lateness (5 s): an ENTER B at 60 s could still come
    assert out == [] and on_tick(ABS, st, 64_999, "e1") == []
    fired = on_tick(ABS, st, 65_000, "e1")
    assert [(m.event_ids, m.end_ms) for m in fired] == [(("ev1",), 60_000)]
    assert on_tick(ABS, st, 120_000, "e1") == []  # once
    out, st = feed(ABS, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 59_000)])
    assert out == [] and on_tick(ABS, st, 1_000_000, "e1") == []


def test_absence_proven_by_a_later_event():
    out, _ = feed(ABS, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "C", 61_000)])
    assert [m.detail["proven_by"] for m in out] == ["ev2"]


def test_dwell_threshold_is_absence_of_exit():
    p = parse_pattern({**BASE, "kind": "absence", "within_s": 30,
                       "trigger": {"event_type": "ENTER", "geofence_id": "Z"},
                       "expected": {"event_type": "EXIT", "geofence_id": "Z"}})
    out, st = feed(p, [ev(1, "ENTER", "Z", 0), ev(2, "EXIT", "Z", 10_000), ev(3, "ENTER", "Z", 20_000)])
    assert out == [] and [m.event_ids for m in on_tick(p, st, 55_000, "e1")] == [("ev3",)]


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
    st = {}
    on_location(p, st, 1_000)
    assert on_tick(p, st, 120_999, "e1") == []
    assert len(on_tick(p, st, 121_000, "e1")) == 1
    assert on_tick(p, st, 500_000, "e1") == []  # once per gap
    on_location(p, st, 600_000)
    assert len(on_tick(p, st, 721_000, "e1")) == 1


def test_time_of_day_on_enter_and_by_timer():
    p = parse_pattern({**BASE, "kind": "time_of_day", "geofence_id": "G", "from_hour": 22, "to_hour": 6})
    night = 1_764_028_800_000 + 23 * 3_600_000  # 2025-11-25T23:00Z
    out, _ = feed(p, [ev(1, "ENTER", "G", night)])
    assert len(out) == 1
    noon = night - 11 * 3_600_000
    out, st = feed(p, [ev(1, "ENTER", "G", noon)])
    assert out == [] and on_tick(p, st, noon + 3_600_000, "e1") == []
    assert len(on_tick(p, st, noon + 10 * 3_600_000 + 1, "e1")) == 1  # 22:00 came, still inside


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
    return [(o.window["start"], o.window["enter"], o.window["exit"], o.window["occ_max"])
            for o in outs if o.window.get("closed")]


def test_tumbling_windows_close_on_event_time():
    p = agg({"type": "tumbling", "size_s": 60})
    st, outs = {}, []
    for i, (t, k) in enumerate([(0, "ENTER"), (10_000, "ENTER"), (59_999, "EXIT"), (60_000, "ENTER"),
                                (130_000, "EXIT")]):
        outs += on_event(p, st, ev(i, k, "G", t), "G")
    assert closed(outs) == [(0, 2, 1, 2), (60_000, 1, 0, 2)]


def test_hopping_windows_overlap():
    p = agg({"type": "hopping", "size_s": 60, "hop_s": 30})
    st, outs = {}, []
    for i, t in enumerate([45_000, 200_000]):
        outs += on_event(p, st, ev(i, "ENTER", "G", t), "G")
    assert sorted(s for s, *_ in closed(outs)) == [0, 30_000]  # 45 s falls in both


def test_session_windows_split_on_gap_and_late_events_are_counted():
    p = agg({"type": "session", "gap_s": 10}, lateness_s=5)
    st, outs = {}, []
    for i, t in enumerate([0, 5_000, 12_000, 40_000, 1_000, 80_000]):
        outs += on_event(p, st, ev(i, "ENTER", "G", t), "G")
    assert [(s, e) for s, e, *_ in closed(outs)] == [(0, 3), (40_000, 1)]
    assert st["late"] == 1  # the event at 1 s arrived after 40 s was seen: beyond lateness


# -- event time: events held back until the watermark passes them --------------------------

def ordered(pattern, events, key="e1"):
    """Feeds through the ordering layer."""
    st, out, late = {}, [], []
    for e in events:
        got, was_late = in_order(pattern, st, e, key)
        out += got
        late += [e["event_id"]] if was_late else []
    return out, st, late


LATE_SEQ = parse_pattern({**SEQ.body, "lateness_s": 5})


def test_out_of_order_within_lateness_matches_as_if_in_order():
    # B (t=3 s) arrives before A (t=1 s): applied in arrival order there is no match
    events = [ev(2, "ENTER", "B", 3000), ev(1, "ENTER", "A", 1000), ev(9, "ENTER", "Z", 9000)]
    assert [m.event_ids for m in feed(SEQ, events)[0]] == []
    out, st, late = ordered(LATE_SEQ, events)
    assert [m.event_ids for m in out] == [("ev1", "ev2")] and late == []
    assert st["wm"] == 4000 and st["held"] == []  # Z concerns no step: it only moved time on
    assert ordered(LATE_SEQ, [*events, ev(8, "ENTER", "Z", 0)])[2] == []  # and is never late


@pytest.mark.parametrize("late_ts,is_late", [(4000, False), (3999, True)])
def test_lateness_boundary(late_ts, is_late):
    # the watermark after an event at 9 s with 5 s lateness is 4 s: 4 s is on time, 3.999 s late
    out, st, late = ordered(LATE_SEQ, [ev(1, "ENTER", "Z", 9000), ev(2, "ENTER", "A", late_ts)])
    assert late == (["ev2"] if is_late else []) and st.get("late", 0) == int(is_late)


def test_zero_lateness_rejects_anything_older_than_the_newest():
    p = parse_pattern({**SEQ.body, "lateness_s": 0})
    out, _st, late = ordered(p, [ev(1, "ENTER", "A", 1000), ev(2, "ENTER", "B", 3000),
                                 ev(3, "ENTER", "X", 2000), ev(4, "ENTER", "B", 3000)])
    assert [m.event_ids for m in out] == [("ev1", "ev2")]  # released at once: nothing held
    assert late == ["ev3"]  # older than the newest; an equal time (ev4) is not late


def test_a_quiet_key_is_released_once_the_input_clock_is_a_lateness_past_it():
    out, st, _ = ordered(LATE_SEQ, [ev(1, "ENTER", "A", 1000), ev(2, "ENTER", "B", 2000)])
    assert out == [] and len(st["held"]) == 2  # both still within lateness of the newest
    assert on_tick(LATE_SEQ, st, 5_999, "e1") == [] and len(st["held"]) == 2
    assert on_tick(LATE_SEQ, st, 6_000, "e1") == [] and len(st["held"]) == 1  # A released alone
    fired = on_tick(LATE_SEQ, st, 7_000, "e1")
    assert [m.event_ids for m in fired] == [("ev1", "ev2")] and st["held"] == []


def test_absence_timer_waits_for_held_events_that_decide_it():
    p = parse_pattern({**ABS.body, "lateness_s": 5})
    _out, st, _ = ordered(p, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", 50_000)])
    # B at 50 s is held (within lateness of the newest) and disproves the absence: a clock past
    # the deadline (60 s) must not fire before B is applied
    assert st["held"][0]["event_id"] == "ev2" and st["pending"]
    assert on_tick(p, st, 70_000, "e1") == []  # B released first: the absence never happened
    assert st.get("pending") == [] and st["held"] == []
    _out, st, _ = ordered(p, [ev(1, "ENTER", "A", 0)])
    assert on_tick(p, st, 64_999, "e1") == []  # the deadline plus the lateness: not yet settled
    assert [m.event_ids for m in on_tick(p, st, 65_000, "e1")] == [("ev1",)]


@pytest.mark.parametrize("pattern", [
    parse_pattern({**BASE, "kind": "count", "within_s": 10, "at_least": 3, "lateness_s": 30,
                   "event": {"event_type": "EXIT", "geofence_id": "G"}}),
    parse_pattern({**BASE, "kind": "comovement", "within_s": 10, "at_least": 3, "lateness_s": 30}),
])
def test_out_of_order_count_and_convoy_match_the_in_order_result(pattern):
    etype = pattern.steps[0].event_type if pattern.steps else "ENTER"
    shuffled = [ev(3, etype, "G", 9000, "c"), ev(1, etype, "G", 1000, "a"), ev(2, etype, "G", 6000, "b"),
                ev(0, etype, "G", 12_000, "d")]
    in_time = sorted(shuffled, key=lambda e: e["ts_ms"])
    expected = [m.match_id for m in feed(pattern, in_time, key="G")[0]]
    assert [m.match_id for m in feed(pattern, shuffled, key="G")[0]] != expected  # order matters
    out, st, late = ordered(pattern, shuffled, key="G")
    released = on_tick(pattern, st, 42_000, "G")  # the clock a lateness past: released in time order
    assert out == [] and late == [] and expected
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

from streams.cep.alignment import releasable  # noqa: E402


def test_rekey_writes_in_merged_event_time_order_and_holds_partitions_that_are_ahead():
    held = {0: [10_000, 11_000], 1: [10_500, 30_000, 31_000]}
    seen = {0: 11_000, 1: 31_000}
    moved, both = {0: 9.0, 1: 9.0}, {0, 1}
    # partition 0 still has records to give: nothing past its newest time (+1 s) goes out
    assert releasable(held, seen, {0, 1}, both, moved, 10, 1000, 5) == {0: 2, 1: 1}
    # all read and partition 0 written out: partition 1 alone is left, and goes
    assert releasable({0: [], 1: [30_000, 31_000]}, seen, set(), both, moved, 10, 1000, 5) == {0: 0, 1: 2}
    # partition 0 stalled for 5 s (its lag is only markers): it no longer holds the others
    assert releasable({1: [30_000]}, seen, {0}, both, moved, 14, 1000, 5) == {1: 1}
    # a partition that has delivered nothing yet holds everything (it may hold the oldest)
    assert releasable({1: [30_000]}, {1: 31_000}, set(), both, moved, 10, 1000, 5) == {1: 0}
    # a held prefix only: a later record with an earlier time waits behind the held one
    assert releasable({0: [50_000, 10_000]}, {0: 50_000, 1: 12_000}, {1}, both, moved, 10, 1000, 5) == {0: 0}
