"""Every CEP kind's Match checked whole: key, event ids, start and end time, and every detail
key, as the alert templates and the match topic's readers see them. A match whose start time
or detail is wrong is still "a match" to a test that only counts matches; these fail on it.
The expected figures are worked out by hand (or by an independent formula), not read back
from the kind."""

import math
import statistics
from datetime import datetime, timezone

import pytest

from geoflux.errors import ValidationError
from streams.cep.kinds.stats import distance_m
from streams.cep.outputs import LATE
from streams.cep.patterns import parse_pattern

BASE = {"pattern_id": "p", "tenant_id": "t", "severity": "high"}
T = 60_000  # within_s 60


def ev(i, etype, gid, ts, entity="e1", lon=0.0, lat=0.0):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity, "tenant_id": "t", "lon": lon, "lat": lat, "attributes": {}}


def pattern(kind, **kw):
    return parse_pattern({**BASE, "kind": kind, **kw})


def feed(p, events, key="e1", st=None):
    st = p.impl.initialize(p) if st is None else st
    out = []
    for e in events:
        out += p.impl.feed(p, st, e, key)
    return out, st


def whole(m):
    assert (m.pattern.tenant_id, m.pattern.pattern_id) == ("t", "p")  # the pattern it belongs to
    return m.key, m.event_ids, m.start_ms, m.end_ms, m.detail


def utc_ms(*args):
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


# -- sequence / absence -------------------------------------------------------------------------
SEQ = pattern("sequence", within_s=60, steps=[{"event_type": "ENTER", "geofence_id": "A"},
                                              {"event_type": "EXIT", "geofence_id": "A"},
                                              {"event_type": "ENTER", "geofence_id": "B"}])


def test_sequence_match_spans_its_first_to_its_last_step():
    out, st = feed(SEQ, [ev(1, "ENTER", "A", 1_000), ev(2, "EXIT", "A", 4_000), ev(3, "ENTER", "B", 9_000)])
    assert [whole(m) for m in out] == [("e1", ("ev1", "ev2", "ev3"), 1_000, 9_000, {})]
    assert out[0].record()["detail"] == {"kind": "sequence"}
    assert st == []  # skip_past_last: nothing of the matched run is kept


def test_sequence_partial_state_and_result_while_waiting():
    _, st = feed(SEQ, [ev(1, "ENTER", "A", 1_000), ev(2, "EXIT", "A", 4_000), ev(3, "ENTER", "A", 5_000)])
    assert st == [[1_000, 2, ["ev1", "ev2"]], [5_000, 1, ["ev3"]]]
    assert SEQ.impl.result(SEQ, st) == {"partials": 2, "furthest_step": 2}
    assert SEQ.impl.result(SEQ, []) == {"partials": 0, "furthest_step": 0}


def test_sequence_with_overlap_allow_matches_every_started_run():
    p = pattern("sequence", within_s=60, overlap="allow",
                steps=[{"event_type": "ENTER", "geofence_id": "A"}, {"event_type": "EXIT", "geofence_id": "A"}])
    out, st = feed(p, [ev(1, "ENTER", "A", 1_000), ev(2, "ENTER", "A", 2_000), ev(3, "EXIT", "A", 3_000)])
    assert [whole(m) for m in out] == [("e1", ("ev1", "ev3"), 1_000, 3_000, {}),
                                       ("e1", ("ev2", "ev3"), 2_000, 3_000, {})]
    assert st == []


@pytest.mark.parametrize("overlap,pairs", [("skip_past_last", [("ev1", "ev2"), ("ev3", "ev4")]),
                                           ("allow", [("ev1", "ev2"), ("ev2", "ev3"), ("ev3", "ev4")])])
def test_sequence_completing_event_starts_a_new_run_only_with_overlap_allow(overlap, pairs):
    """skip_past_last skips past the whole match, its last event included: A A A A is two
    matches of "A then A", not three."""
    p = pattern("sequence", within_s=60, overlap=overlap,
                steps=[{"event_type": "ENTER", "geofence_id": "A"}, {"event_type": "ENTER", "geofence_id": "A"}])
    out, st = feed(p, [ev(i, "ENTER", "A", 1_000 * i) for i in range(1, 5)])
    assert [m.event_ids for m in out] == pairs
    assert st == ([] if overlap == "skip_past_last" else [[4_000, 1, ["ev4"]]])


def test_sequence_specs_name_the_first_step_as_the_starter():
    p = pattern("sequence", within_s=60, not_between=[{"event_type": "DWELL"}],
                steps=[{"event_type": "ENTER", "geofence_id": "A"}, {"event_type": "EXIT", "geofence_id": "A"}])
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [
        ("ENTER", "A", True), ("EXIT", "A", False), ("DWELL", None, False)]


ABS = pattern("absence", within_s=10, trigger={"event_type": "ENTER", "geofence_id": "A"},
              expected={"event_type": "EXIT", "geofence_id": "A"})


def test_absence_proven_by_a_later_event_spans_trigger_to_deadline():
    out, st = feed(ABS, [ev(1, "ENTER", "A", 1_000), ev(2, "ENTER", "A", 11_001)])
    assert [whole(m) for m in out] == [("e1", ("ev1",), 1_000, 11_000, {"proven_by": "ev2"})]
    assert st == [[11_001, 21_001, "ev2"]]
    assert ABS.impl.result(ABS, st) == {"pending": 1, "next_deadline_ms": 21_001}


def test_absence_fired_by_the_timer_spans_trigger_to_deadline():
    _, st = feed(ABS, [ev(1, "ENTER", "A", 1_000)])
    assert ABS.impl.due(ABS, st) == 11_000
    assert ABS.impl.tick(ABS, st, 99_999, 10_999, "e1") == []
    out = ABS.impl.tick(ABS, st, 99_999, 11_000, "e1")
    assert [whole(m) for m in out] == [("e1", ("ev1",), 1_000, 11_000, {"fired_by": "timer"})]
    assert st == [] and ABS.impl.due(ABS, st) is None


def test_absence_expected_event_cancels_only_triggers_before_it():
    p = pattern("absence", within_s=10, overlap="allow", trigger={"event_type": "ENTER", "geofence_id": "A"},
                expected={"event_type": "EXIT", "geofence_id": "A"})
    _, st = feed(p, [ev(1, "ENTER", "A", 1_000), ev(2, "ENTER", "A", 3_000)])
    assert st == [[1_000, 11_000, "ev1"], [3_000, 13_000, "ev2"]]
    _, st = feed(p, [ev(3, "EXIT", "A", 2_000)], st=st)  # arrival order: an EXIT between the two
    assert st == [[3_000, 13_000, "ev2"]]
    assert [(s.event_type, starts) for s, starts in p.impl.specs(p)] == [("ENTER", True), ("EXIT", False)]


T0 = 1_700_000_000_000  # an epoch time: a window test at ts 1_000 cannot tell `ts - start` from `ts + start`
WINDOWED = {
    "sequence": ({"steps": [{"event_type": "ENTER"}, {"event_type": "EXIT"}]}, ["ENTER", "EXIT"], ["e1", "e1"]),
    "count": ({"at_least": 2, "event": {"event_type": "ENTER"}}, ["ENTER", "ENTER"], ["e1", "e1"]),
    "comovement": ({"at_least": 2}, ["ENTER", "ENTER"], ["e1", "e2"]),
    "join": ({"left": {"event_type": "ENTER"}, "right": {"event_type": "EXIT"}}, ["ENTER", "EXIT"], ["e1", "e2"]),
}


@pytest.mark.parametrize("kind", sorted(WINDOWED))
@pytest.mark.parametrize("gap,matches", [(1_000, True), (T + 1, False)])
def test_windows_at_epoch_times(kind, gap, matches):
    extra, types, entities = WINDOWED[kind]
    p = pattern(kind, within_s=60, **extra)
    out, _ = feed(p, [ev(1, types[0], "A", T0, entities[0]), ev(2, types[1], "A", T0 + gap, entities[1])])
    assert [(m.start_ms, m.end_ms) for m in out] == ([(T0, T0 + gap)] if matches else [])


# -- count / comovement -------------------------------------------------------------------------
def test_count_per_entity_keys_the_match_by_entity_and_fence():
    p = pattern("count", within_s=60, at_least=3, event={"event_type": "EXIT"})
    out, st = feed(p, [ev(1, "EXIT", "A", 1_000), ev(2, "EXIT", "B", 1_500), ev(3, "EXIT", "A", 2_000),
                       ev(4, "EXIT", "A", 3_000)])
    assert [whole(m) for m in out] == [("e1|A", ("ev1", "ev3", "ev4"), 1_000, 3_000,
                                        {"count": "3", "geofence_id": "A"})]
    assert st == {"B": [[1_500, "ev2"]]}
    assert p.impl.result(p, st) == {"windows": 1, "largest": 1}
    assert p.impl.keyed_by(p.params) == "entity"
    assert p.impl.result(p, {}) == {"windows": 0, "largest": 0}


def test_count_per_geofence_keys_the_match_by_the_fence_alone():
    p = pattern("count", within_s=60, at_least=2, per="geofence", overlap="allow",
                event={"event_type": "ENTER", "geofence_id": "A"})
    out, st = feed(p, [ev(1, "ENTER", "A", 1_000, "e1"), ev(2, "ENTER", "A", 2_000, "e2"),
                       ev(3, "ENTER", "A", 5_000, "e3")], key="A")
    assert [whole(m) for m in out] == [
        ("A", ("ev1", "ev2"), 1_000, 2_000, {"count": "2", "geofence_id": "A"}),
        ("A", ("ev1", "ev2", "ev3"), 1_000, 5_000, {"count": "3", "geofence_id": "A"})]
    assert st == {"": [[1_000, "ev1"], [2_000, "ev2"], [5_000, "ev3"]]}
    assert p.impl.keyed_by(p.params) == "geofence"


def test_count_keeps_at_most_four_windows_worth_of_events():
    p = pattern("count", within_s=60, at_least=2, overlap="allow", event={"event_type": "EXIT"})
    _, st = feed(p, [ev(i, "EXIT", "A", 1_000 + i) for i in range(12)])
    assert [w[1] for w in st["A"]] == [f"ev{i}" for i in range(4, 12)]


def test_count_slides_every_fence_out_of_the_window():
    p = pattern("count", within_s=60, at_least=5, event={"event_type": "EXIT"})
    _, st = feed(p, [ev(1, "EXIT", "A", 1_000), ev(2, "EXIT", "B", 1_000 + T - 1)])
    assert set(st) == {"A", "B"}
    _, st = feed(p, [ev(3, "EXIT", "B", 1_000 + T)], st=st)
    assert st == {"B": [[1_000 + T - 1, "ev2"], [1_000 + T, "ev3"]]}


def test_comovement_match_lists_entities_sorted_and_ids_in_arrival_order():
    p = pattern("comovement", within_s=60, at_least=2, geofence_id="A")
    out, st = feed(p, [ev(1, "ENTER", "A", 1_000, "zed"), ev(2, "ENTER", "B", 1_500, "bob"),
                       ev(3, "EXIT", "A", 1_600, "bob"), ev(4, "ENTER", "A", 2_000, "amy")], key="A")
    assert [whole(m) for m in out] == [("A", ("ev1", "ev4"), 1_000, 2_000,
                                        {"entities": "amy,zed", "geofence_id": "A"})]
    assert st == []
    assert p.impl.result(p, [[1, "a", "x"]]) == {"entities_in_window": 1}
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [("ENTER", "A", True)]
    assert p.impl.keyed_by(p.params) == "geofence"


def test_comovement_counts_an_entity_once_with_its_newest_enter():
    p = pattern("comovement", within_s=60, at_least=3, overlap="allow")
    out, st = feed(p, [ev(1, "ENTER", "A", 1_000, "a"), ev(2, "ENTER", "A", 2_000, "b"),
                       ev(3, "ENTER", "A", 3_000, "a"), ev(4, "ENTER", "B", 4_000, "c")], key="A")
    assert [whole(m) for m in out] == [("A", ("ev2", "ev3", "ev4"), 2_000, 4_000,
                                        {"entities": "a,b,c", "geofence_id": "B"})]
    assert st == [[2_000, "b", "ev2"], [3_000, "a", "ev3"], [4_000, "c", "ev4"]]


# -- join ---------------------------------------------------------------------------------------
JOIN = pattern("join", within_s=120, geofence_id="depot", max_distance_m=200,
               left={"event_type": "ENTER", "entity_prefix": "truck-"},
               right={"event_type": "ENTER", "entity_glob": "car-*"})
# 0.001 degree of longitude on the equator: 0.001 * pi / 180 * 6_371_008.8 m = 111.195 m
GAP_DETAIL = {"geofence_id": "depot", "left_entity": "truck-1", "right_entity": "car-1",
              "gap_ms": "2000", "distance_m": "111.2"}


def test_join_left_first_names_both_sides_their_gap_and_distance():
    out, st = feed(JOIN, [ev(1, "ENTER", "depot", 1_000, "truck-1"),
                          ev(2, "ENTER", "depot", 3_000, "car-1", lon=0.001)], key="depot")
    assert [whole(m) for m in out] == [("depot", ("ev1", "ev2"), 1_000, 3_000, GAP_DETAIL)]
    assert st == {"l": [], "r": []} and JOIN.impl.empty(st)


def test_join_right_first_still_puts_the_left_side_first():
    out, st = feed(JOIN, [ev(1, "ENTER", "depot", 1_000, "car-1", lon=0.001),
                          ev(2, "ENTER", "depot", 3_000, "truck-1")], key="depot")
    assert [whole(m) for m in out] == [("depot", ("ev2", "ev1"), 1_000, 3_000, GAP_DETAIL)]
    assert JOIN.impl.result(JOIN, st) == {"waiting_left": 0, "waiting_right": 0}


def test_join_without_a_distance_carries_no_distance():
    p = pattern("join", within_s=120, overlap="allow", left={"event_type": "ENTER", "entity_prefix": "truck-"},
                right={"event_type": "EXIT"})
    out, st = feed(p, [ev(1, "EXIT", "A", 1_000, "car-1"), ev(2, "EXIT", "A", 1_500, "car-2"),
                       ev(3, "ENTER", "A", 4_000, "truck-1")], key="A")
    common = {"geofence_id": "A", "left_entity": "truck-1"}
    assert [whole(m) for m in out] == [
        ("A", ("ev3", "ev1"), 1_000, 4_000, {**common, "right_entity": "car-1", "gap_ms": "3000"}),
        ("A", ("ev3", "ev2"), 1_500, 4_000, {**common, "right_entity": "car-2", "gap_ms": "2500"})]
    assert JOIN.impl.result(p, st) == {"waiting_left": 1, "waiting_right": 2}
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [
        ("ENTER", None, True), ("EXIT", None, True)]


def test_join_max_distance_is_inclusive_to_the_exact_metre():
    d = distance_m(0.0, 0.0, 0.001, 0.0)
    p = pattern("join", within_s=120, max_distance_m=d, left={"event_type": "ENTER"}, right={"event_type": "EXIT"})
    out, _ = feed(p, [ev(1, "ENTER", "A", 1_000, "a"), ev(2, "EXIT", "A", 2_000, "b", lon=0.001)], key="A")
    assert [m.event_ids for m in out] == [("ev1", "ev2")]


def test_join_event_without_a_position_is_taken_at_0_0():
    no_position = {k: v for k, v in ev(2, "ENTER", "depot", 3_000, "car-1").items() if k not in ("lon", "lat")}
    out, _ = feed(JOIN, [ev(1, "ENTER", "depot", 1_000, "truck-1", lon=0.0, lat=0.0), no_position], key="depot")
    assert [whole(m)[4]["distance_m"] for m in out] == ["0.0"]
    out, _ = feed(JOIN, [ev(1, "ENTER", "depot", 1_000, "truck-1", lon=0.0, lat=0.001), no_position], key="depot")
    assert [whole(m)[4]["distance_m"] for m in out] == ["111.2"]


def test_join_on_one_fence_listens_on_that_fence_only():
    assert [(s.event_type, s.geofence_id, starts) for s, starts in JOIN.impl.specs(JOIN)] == [
        ("ENTER", "depot", True), ("ENTER", "depot", True)]


@pytest.mark.parametrize("lon,pairs", [(0.0017986, True), (0.0017987, False)])
def test_join_max_distance_includes_that_distance(lon, pairs):
    """200 m is 0.00179863 degrees of longitude on the equator."""
    out, _ = feed(JOIN, [ev(1, "ENTER", "depot", 1_000, "truck-1"),
                         ev(2, "ENTER", "depot", 3_000, "car-1", lon=lon)], key="depot")
    assert len(out) == pairs


# -- speed --------------------------------------------------------------------------------------
def test_speed_match_carries_both_points_the_distance_and_both_speeds():
    p = pattern("speed", max_speed_kmh=120, lateness_s=0)
    st = p.impl.initialize(p)
    assert p.impl.on_location(p, st, {"ts_ms": 1_000, "lon": 0.0, "lat": 0.0}, "e1") == []
    out = p.impl.on_location(p, st, {"ts_ms": 2_000, "lon": 0.01, "lat": 0.0}, "e1")
    # 0.01 degree on the equator: 1111.95 m in 1 s = 4003.0 km/h
    assert [whole(m) for m in out] == [("e1", ("loc:1000", "loc:2000"), 1_000, 2_000, {
        "entity_id": "e1", "speed_kmh": "4003.0", "limit_kmh": "120", "distance_m": "1112.0",
        "seconds": "1", "from": "0.000000,0.000000", "to": "0.010000,0.000000"})]
    assert p.impl.result(p, st) == {"last_point": [2_000, 0.01, 0.0], "held": 0}


def test_speed_holds_points_for_the_lateness_and_releases_them_on_tick():
    p = pattern("speed", max_speed_kmh=120, lateness_s=5)
    st = p.impl.initialize(p)
    for ts, lon in ((1_000, 0.0), (3_000, 0.02)):
        assert p.impl.on_location(p, st, {"ts_ms": ts, "lon": lon, "lat": 0.0}, "e1") == []
    assert p.impl.due(p, st) == 1_000 and not p.impl.empty(st)
    out = p.impl.tick(p, st, 0, 10_000, "e1")
    assert [(m.start_ms, m.end_ms, m.detail["seconds"], m.detail["speed_kmh"]) for m in out] == [
        (1_000, 3_000, "2", "4003.0")]
    assert st[1] == 3_000 and p.impl.due(p, st) is None
    assert p.impl.on_location(p, st, {"ts_ms": 2_999, "lon": 0.0, "lat": 0.0}, "e1") == [LATE]  # behind the watermark


# -- presence -----------------------------------------------------------------------------------
NIGHT = pattern("time_of_day", geofence_id="G", from_hour=22, to_hour=6)


def test_time_of_day_enter_within_hours_matches_at_the_enter():
    at = utc_ms(2024, 1, 1, 23, 30)
    out, st = feed(NIGHT, [ev(1, "ENTER", "G", at)])
    assert [whole(m) for m in out] == [("e1", ("ev1",), at, at, {"hour": "23"})]
    assert st == [1, "ev1", datetime(2024, 1, 1).toordinal(), at]
    assert NIGHT.impl.result(NIGHT, st) == {"inside": True, "fired_day": datetime(2024, 1, 1).toordinal()}


def test_time_of_day_timer_match_starts_at_the_hour_it_fires_in():
    at, now = utc_ms(2024, 1, 1, 21, 30), utc_ms(2024, 1, 1, 22, 15)
    out, st = feed(NIGHT, [ev(1, "ENTER", "G", at)])
    assert out == [] and NIGHT.impl.due(NIGHT, st) == utc_ms(2024, 1, 1, 22)
    assert st == [1, "ev1", 0, at]
    assert NIGHT.impl.tick(NIGHT, st, utc_ms(2024, 1, 1, 21, 59), 0, "e1") == []  # not yet in the hours
    out = NIGHT.impl.tick(NIGHT, st, now, 0, "e1")
    assert [whole(m) for m in out] == [("e1", ("ev1",), utc_ms(2024, 1, 1, 22), now,
                                        {"hour": "22", "fired_by": "timer"})]
    assert NIGHT.impl.tick(NIGHT, st, now + 60_000, 0, "e1") == []  # once a day
    assert NIGHT.impl.due(NIGHT, st) == utc_ms(2024, 1, 2, 0)  # the next day's first hour in the window


def test_time_of_day_fires_again_on_the_next_utc_day_only():
    out, _ = feed(NIGHT, [ev(1, "ENTER", "G", utc_ms(2024, 1, 1, 22, 10)), ev(2, "EXIT", "G", utc_ms(2024, 1, 1, 22, 20)),
                           ev(3, "ENTER", "G", utc_ms(2024, 1, 1, 23, 50)), ev(4, "EXIT", "G", utc_ms(2024, 1, 1, 23, 55)),
                           ev(5, "ENTER", "G", utc_ms(2024, 1, 2, 0, 5))])
    assert [(m.event_ids, m.detail["hour"]) for m in out] == [(("ev1",), "22"), (("ev5",), "0")]


def test_time_of_day_ignores_other_fences_and_dwells():
    out, st = feed(NIGHT, [ev(1, "ENTER", "H", utc_ms(2024, 1, 1, 23)), ev(2, "DWELL", "G", utc_ms(2024, 1, 1, 23))])
    assert out == [] and st == [0, "", 0, 0] and NIGHT.impl.empty(st)
    assert NIGHT.impl.due(NIGHT, st) is None and NIGHT.impl.tick(NIGHT, st, utc_ms(2024, 1, 1, 23), 0, "e1") == []


def test_time_of_day_exit_stops_the_timer_but_remembers_the_day():
    _, st = feed(NIGHT, [ev(1, "ENTER", "G", utc_ms(2024, 1, 1, 23)), ev(2, "EXIT", "G", utc_ms(2024, 1, 1, 23, 5))])
    assert st[0] == 0 and not NIGHT.impl.empty(st)  # the day it fired is still remembered
    assert NIGHT.impl.due(NIGHT, st) is None
    assert NIGHT.impl.result(NIGHT, st) == {"inside": False, "fired_day": datetime(2024, 1, 1).toordinal()}
    assert NIGHT.impl.tick(NIGHT, st, utc_ms(2024, 1, 2, 23), 0, "e1") == []  # outside: no timer match


def test_time_of_day_state_of_a_visit_outside_the_hours_is_empty_after_its_exit():
    _, st = feed(NIGHT, [ev(1, "ENTER", "G", utc_ms(2024, 1, 1, 12)), ev(2, "EXIT", "G", utc_ms(2024, 1, 1, 12, 5))])
    assert st == [0, "ev1", 0, utc_ms(2024, 1, 1, 12)] and NIGHT.impl.empty(st)


def test_time_of_day_day_window_is_half_open():
    p = pattern("time_of_day", geofence_id="G", from_hour=9, to_hour=17)
    got = {h: bool(feed(p, [ev(1, "ENTER", "G", utc_ms(2024, 1, 1, h))])[0]) for h in (8, 9, 16, 17)}
    assert got == {8: False, 9: True, 16: True, 17: False}
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [
        ("ENTER", "G", True), ("EXIT", "G", False)]


@pytest.fixture
def kolkata():
    """The machine's local zone set to UTC+05:30 for one test: presence hours are UTC, so
    nothing may change."""
    import os
    import time
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_time_of_day_hours_are_utc_whatever_the_local_zone(kolkata):
    assert datetime.fromtimestamp(0).hour == 5  # the zone took: local time is not UTC here
    at = utc_ms(2024, 1, 1, 20)  # 01:30 in Kolkata: inside a 22-6 window if read locally
    out, st = feed(NIGHT, [ev(1, "ENTER", "G", at)])
    assert out == [] and NIGHT.impl.due(NIGHT, st) == utc_ms(2024, 1, 1, 22)
    late = utc_ms(2024, 1, 1, 23, 30)  # 05:00 the next day in Kolkata
    out, _ = feed(NIGHT, [ev(2, "ENTER", "G", late)])
    assert [whole(m) for m in out] == [("e1", ("ev2",), late, late, {"hour": "23"})]
    assert out[0].pattern.impl.result(NIGHT, _)["fired_day"] == datetime(2024, 1, 1).toordinal()


def test_track_gap_match_spans_the_silence():
    p = pattern("track_gap", within_s=60)
    st = p.impl.initialize(p)
    assert st == [0, 0]
    assert p.impl.empty(st) and p.impl.due(p, st) is None and p.impl.tick(p, st, 10**9, 0, "e1") == []
    p.impl.on_location(p, st, {"ts_ms": 10_000, "lon": 0.0, "lat": 0.0}, "e1")
    p.impl.on_location(p, st, {"ts_ms": 5_000, "lon": 0.0, "lat": 0.0}, "e1")  # older: ignored
    assert p.impl.due(p, st) == 10_000 + T
    assert p.impl.result(p, st) == {"last_location_ms": 10_000, "fired_for_ms": 0}
    assert p.impl.tick(p, st, 10_000 + T - 1, 0, "e1") == []
    out = p.impl.tick(p, st, 10_000 + T, 0, "e1")
    assert [whole(m) for m in out] == [("e1", (), 10_000, 10_000 + T, {"silent_since_ms": "10000"})]
    assert p.impl.tick(p, st, 10_000 + 2 * T, 0, "e1") == [] and p.impl.due(p, st) is None
    assert p.impl.result(p, st) == {"last_location_ms": 10_000, "fired_for_ms": 10_000}


# -- outliers -----------------------------------------------------------------------------------
DWELLS = (50, 60, 70, 60, 55)


def dwell_events(dwells, then=None):
    """ENTER -> EXIT of one entity each, 100 s apart; `then`: a last dwell by entity "x"."""
    events, ts = [], 0
    for i, dwell_s in enumerate(dwells):
        events += [ev(2 * i, "ENTER", "A", ts, f"e{i}"), ev(2 * i + 1, "EXIT", "A", ts + dwell_s * 1000, f"e{i}")]
        ts += 100_000
    if then is not None:
        events += [ev(100, "ENTER", "A", ts, "x"), ev(101, "EXIT", "A", ts + then * 1000, "x")]
    return events


@pytest.mark.parametrize("direction,short,long_", [("long", False, True), ("short", True, False), ("both", True, True)])
def test_dwell_outlier_direction_picks_which_side_fires(direction, short, long_):
    p = pattern("dwell_outlier", min_samples=5, direction=direction)
    got_short = [m.detail["direction"] for m in feed(p, dwell_events(DWELLS, then=5), key="A")[0]]
    got_long = [m.detail["direction"] for m in feed(p, dwell_events(DWELLS, then=600), key="A")[0]]
    assert got_short == (["short"] if short else []) and got_long == (["long"] if long_ else [])


def test_dwell_outlier_guards_samples_and_ratio():
    few = pattern("dwell_outlier", min_samples=6)
    out, st = feed(few, dwell_events(DWELLS, then=600), key="A")
    assert out == [] and st["s"][0] == 6  # not enough history yet: the dwell joins it
    modest = pattern("dwell_outlier", min_samples=5, min_ratio=20)  # 600 s is ~10x the typical
    out, st = feed(modest, dwell_events(DWELLS, then=600), key="A")
    assert out == [] and st["s"][0] == 6
    assert feed(pattern("dwell_outlier", min_samples=5, min_ratio=10), dwell_events(DWELLS, then=600), key="A")[0]


def test_dwell_outlier_state_result_and_specs():
    p = pattern("dwell_outlier", geofence_id="A", min_samples=5)
    st = p.impl.initialize(p)
    assert st == {"in": {}, "s": [0, 0.0, 0.0]} and p.impl.empty(st) is True
    _, st = feed(p, dwell_events(DWELLS) + [ev(50, "ENTER", "A", 10**7, "y"), ev(51, "ENTER", "B", 10**7, "z")],
                 key="A", st=st)
    logs = [math.log1p(s) for s in DWELLS]
    assert p.impl.result(p, st) == {"samples": 5, "typical_dwell_s": math.expm1(statistics.mean(logs)),
                                    "log_std": pytest.approx(statistics.stdev(logs)), "inside": 1}
    assert st["in"] == {"y": [10**7, "ev50"]} and p.impl.empty(st) is False
    assert p.impl.keyed_by(p.params) == "geofence"
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [
        ("ENTER", "A", True), ("EXIT", "A", True)]


def test_outlier_defaults():
    d = pattern("dwell_outlier").params
    assert (d.z, d.min_samples, d.min_ratio, d.direction, d.geofence_id) == (4, 30, 2, "long", None)
    r = pattern("rate_outlier", window_s=60).params
    assert (r.window_ms, r.z, r.min_windows, r.min_count, r.alpha, r.geofence_id) == (60_000, 4, 12, 5, 2 / 25, None)
    assert pattern("dwell_outlier", min_ratio=1).params.min_ratio == 1  # 1 is allowed: z alone decides
    assert pattern("rate_outlier", window_s=60, min_windows=1, min_count=1).params.min_windows == 1


def test_rate_outlier_state_result_and_specs():
    p = pattern("rate_outlier", window_s=60, geofence_id="A")
    st = p.impl.initialize(p)
    assert st == {"m": 0, "wm": 0, "c": None, "w": [], "s": [0, 0.0, 0.0]}
    assert p.impl.result(p, st) == {"windows_seen": 0, "baseline_mean": 0.0, "threshold": None}
    assert p.impl.keyed_by(p.params) == "geofence" and p.impl.empty(st) is False
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [("ENTER", "A", True)]


def test_dwell_outlier_match_carries_the_dwell_its_baseline_and_z():
    p = pattern("dwell_outlier", geofence_id="A", min_samples=5)
    events, ts = [], 0
    for i, dwell_s in enumerate((50, 60, 70, 60, 55)):
        events += [ev(2 * i, "ENTER", "A", ts, f"e{i}"), ev(2 * i + 1, "EXIT", "A", ts + dwell_s * 1000, f"e{i}")]
        ts += 100_000
    events += [ev(10, "ENTER", "A", ts, "x"), ev(11, "EXIT", "A", ts + 600_000, "x")]
    out, st = feed(p, events, key="A")
    logs = [math.log1p(s) for s in (50, 60, 70, 60, 55)]
    z = (math.log1p(600) - statistics.mean(logs)) / statistics.stdev(logs)
    assert [whole(m) for m in out] == [("A", ("ev10", "ev11"), ts, ts + 600_000, {
        "geofence_id": "A", "entity_id": "x", "dwell_s": "600",
        "typical_dwell_s": f"{math.expm1(statistics.mean(logs)):.1f}", "z": f"{z:.2f}",
        "samples": "5", "direction": "long"})]
    assert st["s"][0] == 5  # the outlier stays out of the baseline


def test_count_of_one_matches_every_event_and_keeps_nothing():
    p = pattern("count", within_s=60, at_least=1, event={"event_type": "DWELL"})
    out, st = feed(p, [ev(1, "DWELL", "A", 1_000), ev(2, "DWELL", "A", 2_000)])
    assert [whole(m) for m in out] == [("e1|A", ("ev1",), 1_000, 1_000, {"count": "1", "geofence_id": "A"}),
                                       ("e1|A", ("ev2",), 2_000, 2_000, {"count": "1", "geofence_id": "A"})]
    assert st == {}


def speed_run(p, *points):
    st, out = p.impl.initialize(p), []
    for ts, lon, lat in points:
        out += p.impl.on_location(p, st, {"ts_ms": ts, "lon": lon, "lat": lat}, "e1")
    return out, st


def test_speed_starts_empty_with_a_100_m_guard():
    p = pattern("speed", max_speed_kmh=0.5)  # any positive limit is a limit
    st = p.impl.initialize(p)
    assert st == [0, 0, [], []] and p.impl.empty(st) is True and p.impl.due(p, st) is None
    assert p.params.min_distance_m == 100


def test_speed_orders_held_points_by_time_ties_in_arrival_order():
    p = pattern("speed", max_speed_kmh=120, lateness_s=5)
    _, st = speed_run(p, (1_000, 0.0, 0.0), (3_000, 0.1, 0.0), (2_000, 0.2, 0.0), (3_000, 0.3, 0.0), (500, 0.4, 0.0))
    assert st[0] == 3_000 and st[1] == 0
    assert st[2] == [[500, 0.4, 0.0], [1_000, 0.0, 0.0], [2_000, 0.2, 0.0], [3_000, 0.1, 0.0], [3_000, 0.3, 0.0]]


def test_speed_at_the_limit_and_a_jump_at_the_guard_are_both_allowed():
    d = distance_m(0.0, 0.0, 0.01, 0.0)
    at_limit = pattern("speed", max_speed_kmh=d * 3.6, lateness_s=0)  # exactly d metres in 1 s
    assert speed_run(at_limit, (1_000, 0.0, 0.0), (2_000, 0.01, 0.0))[0] == []
    at_guard = pattern("speed", max_speed_kmh=1, min_distance_m=d, lateness_s=0)
    out, _ = speed_run(at_guard, (1_000, 0.0, 0.0), (2_000, 0.01, 0.0))
    assert [m.detail["distance_m"] for m in out] == ["1112.0"]  # a jump of exactly the guard counts


def test_speed_of_two_far_points_at_the_same_millisecond_is_infinite():
    out, _ = speed_run(pattern("speed", max_speed_kmh=120, lateness_s=0), (1_000, 10.0, 20.0), (1_000, 10.01, 20.0))
    assert [(m.detail["speed_kmh"], m.detail["seconds"], m.detail["from"], m.detail["to"]) for m in out] == [
        ("inf", "0", "10.000000,20.000000", "10.010000,20.000000")]


W0 = 1_700_000_040_000  # a minute boundary


def test_rate_outlier_match_carries_its_window_and_the_baseline_it_beat():
    p = pattern("rate_outlier", geofence_id="A", window_s=60, z=1, min_windows=1, min_count=1,
                baseline_windows=3, lateness_s=0)
    events = [ev(1, "ENTER", "A", W0 + 1_000), ev(2, "ENTER", "A", W0 + 2_000), ev(3, "EXIT", "A", W0 + 2_500),
              ev(4, "ENTER", "B", W0 + 2_600)]
    events += [ev(10 + i, "ENTER", "A", W0 + 60_000 + i * 1_000) for i in range(5)]
    out, st = feed(p, events, key="A")
    # baseline [1 window, mean 2, variance 0]; spread max(0, sqrt 2, 1); threshold 2 + 1 * 1.414
    assert [whole(m) for m in out] == [("A", ("ev13",), W0 + 60_000, W0 + 63_000, {
        "geofence_id": "A", "window_start_ms": str(W0 + 60_000), "window_s": "60", "entries": "4",
        "baseline_mean": "2.00", "baseline_std": "0.00", "threshold": "3.41", "windows_seen": "1"})]
    assert st["s"] == [1, 2.0, 0.0] and st["w"] == [[W0 + 60_000, 5, 1]] and st["c"] == W0 + 60_000
    assert p.impl.due(p, st) == W0 + 120_000
    assert p.impl.result(p, st) == {"windows_seen": 1, "baseline_mean": 2.0, "threshold": 2 + math.sqrt(2)}
    p.impl.tick(p, st, 0, W0 + 120_000, "A")  # the surge window closes but stays out of the baseline
    assert st["s"] == [1, 2.0, 0.0] and st["w"] == [] and st["c"] == W0 + 120_000
    assert p.impl.due(p, st) is None and p.impl.empty(st) is False


# -- aggregate (records, not matches) -----------------------------------------------------------
def test_aggregate_window_record_whole_open_then_closed():
    p = pattern("aggregate", geofence_id="A", window={"type": "tumbling", "size_s": 60})
    _, st = feed(p, [ev(1, "ENTER", "A", W0 + 1_000, "e1"), ev(2, "ENTER", "A", W0 + 2_000, "e2"),
                     ev(3, "EXIT", "A", W0 + 3_000, "e1"), ev(4, "DWELL", "A", W0 + 4_000, "e2"),
                     ev(5, "ENTER", "B", W0 + 5_000, "e3")], key="A")
    record = {"pattern_id": "p", "tenant_id": "t", "geofence_id": "A", "window": "tumbling",
              "start_ms": W0, "end_ms": W0 + 60_000, "entries": 2, "exits": 1, "dwells": 1,
              "occupancy_max": 2, "occupancy_end": 1, "closed": False, "late_events": 0}
    assert [a.record() for a in p.impl.publish(p, st, "A")] == [record]
    out, st = feed(p, [ev(6, "ENTER", "A", W0 + 60_000, "e4")], key="A", st=st)
    assert [a.record() for a in out] == [{**record, "closed": True}]
    assert feed(p, [ev(7, "EXIT", "A", W0 + 59_999, "e2")], key="A", st=st)[0] == [LATE]
    assert p.impl.result(p, st) == {"open_windows": 1, "occupancy": 2, "watermark_ms": W0 + 60_000,
                                    "late_events": 1}
    assert [(s.event_type, s.geofence_id, starts) for s, starts in p.impl.specs(p)] == [(None, "A", True)]


def test_aggregate_session_bridged_by_an_event_merges_into_the_earlier():
    p = pattern("aggregate", lateness_s=60, window={"type": "session", "gap_s": 10})
    out, st = feed(p, [ev(1, "ENTER", "A", W0, "e1"), ev(2, "ENTER", "A", W0 + 18_000, "e2")], key="A")
    assert out == [] and [w[0] for w in st["w"]] == [W0, W0 + 18_000]
    out, st = feed(p, [ev(3, "EXIT", "A", W0 + 9_000, "e1")], key="A", st=st)
    assert [(type(o).__name__, o.start_ms, o.key) for o in out] == [("AggregateGone", W0 + 18_000, f"t/p|A|{W0 + 18_000}")]
    assert st["w"] == [[W0, W0 + 28_000, W0 + 18_000, 2, 1, 0, 2, 1]]


def test_time_of_day_after_a_timer_match_the_next_due_is_the_next_night_not_the_past():
    """Inside over several nights: once the timer fired on a day, the next due time is the first
    hour of the window on a later day. A due time in the past would wake the key on every tick
    until its EXIT."""
    at = utc_ms(2024, 1, 1, 23)
    out, st = feed(NIGHT, [ev(1, "ENTER", "G", at)])
    assert [m.detail["hour"] for m in out] == ["23"] and NIGHT.impl.due(NIGHT, st) == utc_ms(2024, 1, 2, 0)
    assert [m.start_ms for m in NIGHT.impl.tick(NIGHT, st, utc_ms(2024, 1, 2, 0), 0, "e1")] == [utc_ms(2024, 1, 2, 0)]
    assert NIGHT.impl.due(NIGHT, st) == utc_ms(2024, 1, 3, 0)
    assert NIGHT.impl.tick(NIGHT, st, utc_ms(2024, 1, 2, 23), 0, "e1") == []
    assert [m.start_ms for m in NIGHT.impl.tick(NIGHT, st, utc_ms(2024, 1, 3, 0, 30), 0, "e1")] == [utc_ms(2024, 1, 3, 0)]
    assert NIGHT.impl.due(NIGHT, st) == utc_ms(2024, 1, 4, 0)


def test_dwell_outlier_against_a_fence_whose_dwells_never_vary():
    p = pattern("dwell_outlier", min_samples=5)
    out, st = feed(p, dwell_events((60,) * 5, then=600), key="A")
    assert [(m.detail["z"], m.detail["typical_dwell_s"]) for m in out] == [("inf", "60.0")]
    out, _ = feed(p, [ev(200, "ENTER", "A", 10**8, "y"), ev(201, "EXIT", "A", 10**8 + 60_000, "y")], key="A", st=st)
    assert out == []  # exactly typical: z 0, not a division by zero


def test_dwell_outlier_counts_sub_second_and_negative_dwells_as_they_are():
    p = pattern("dwell_outlier")
    _, st = feed(p, [ev(1, "ENTER", "A", 1_000, "a"), ev(2, "EXIT", "A", 1_500, "a"),
                     ev(3, "ENTER", "A", 9_000, "b"), ev(4, "EXIT", "A", 8_000, "b")], key="A")
    assert st["s"][0] == 2 and st["s"][1] == pytest.approx(math.log1p(0.5) / 2)  # 0.5 s and 0 s


def test_dwell_outlier_ignores_dwell_events_of_an_entity_inside():
    p = pattern("dwell_outlier")
    _, st = feed(p, [ev(1, "ENTER", "A", 1_000, "a"), ev(2, "DWELL", "A", 5_000, "a")], key="A")
    assert st["in"] == {"a": [1_000, "ev1"]} and st["s"][0] == 0


def test_dwell_outlier_forgets_the_longest_inside_tenth_past_max_open():
    from streams.cep.kinds.outliers import MAX_OPEN
    p = pattern("dwell_outlier")
    events = [ev(i, "ENTER", "A", 1_000_000 - i, f"e{i}") for i in range(MAX_OPEN)]  # e0 entered last
    _, st = feed(p, events, key="A")
    assert len(st["in"]) == MAX_OPEN
    _, st = feed(p, [ev(-1, "ENTER", "A", 2_000_000, "new")], key="A", st=st)
    assert len(st["in"]) == MAX_OPEN + 1 - MAX_OPEN // 10
    gone = {f"e{i}" for i in range(MAX_OPEN - MAX_OPEN // 10, MAX_OPEN)}  # the earliest ENTERs
    assert not gone & st["in"].keys() and {"e0", "new", f"e{MAX_OPEN - MAX_OPEN // 10 - 1}"} <= st["in"].keys()


def W(k, plus=0):
    return W0 + k * 60_000 + plus


def rate(**kw):
    return pattern("rate_outlier", geofence_id="A", window_s=60, baseline_windows=3, **kw)  # alpha 0.5


def test_rate_outlier_event_at_the_watermark_is_in_time_and_before_it_late():
    p = rate(lateness_s=0)
    out, st = feed(p, [ev(1, "ENTER", "A", W(0, 1_000)), ev(2, "ENTER", "A", W(0, 1_000))], key="A")
    assert out == [] and st["wm"] == W(0, 1_000) and st["w"] == [[W(0), 2, 0]]
    assert feed(p, [ev(3, "ENTER", "A", W(0, 999))], key="A", st=st)[0] == [LATE]


def test_rate_outlier_fires_only_above_its_threshold():
    p = rate(lateness_s=0, z=2, min_count=1, min_windows=1)
    events = [ev(1, "ENTER", "A", W(0, 1_000))] + [ev(10 + i, "ENTER", "A", W(1, i * 1_000)) for i in range(4)]
    out, _ = feed(p, events, key="A")
    # baseline: 1 window of 1 entry; spread max(0, 1, 1) = 1; threshold 1 + 2 * 1 = 3: the 4th fires
    assert [(m.event_ids, m.detail["entries"], m.detail["threshold"]) for m in out] == [(("ev13",), "4", "3.00")]


def test_rate_outlier_long_quiet_spell_counts_50_over_alpha_windows_then_jumps():
    p = rate(lateness_s=0)
    _, st = feed(p, [ev(1, "ENTER", "A", W(0, 1_000)), ev(2, "ENTER", "A", W(500, 30_000))], key="A")
    # window 0, then 100 quiet windows (50 / 0.5) as zeros; the rest of the spell is skipped
    assert st["s"][0] == 101 and st["c"] == W(500) and st["wm"] == W(500, 30_000)
    assert st["w"] == [[W(500), 1, 0]]


def test_rate_outlier_jump_lands_on_a_window_with_entries_and_goes_on_closing():
    p = rate(lateness_s=200 * 60)
    _, st = feed(p, [ev(1, "ENTER", "A", W(0, 1_000)), ev(2, "ENTER", "A", W(300, 1_000)),
                     ev(3, "ENTER", "A", W(600, 1_000))], key="A")
    # closes 0-99 (100), then 100-200 (101 quiet), jumps to 300 (1), jumps again to 400
    assert st["s"][0] == 202 and st["c"] == W(400) and [w[0] for w in st["w"]] == [W(600)]


def test_dwell_outlier_with_one_zero_second_dwell_is_not_empty():
    p = pattern("dwell_outlier")
    _, st = feed(p, [ev(1, "ENTER", "A", 1_000, "a"), ev(2, "EXIT", "A", 1_000, "a")], key="A")
    assert st == {"in": {}, "s": [1, 0.0, 0.0]} and p.impl.empty(st) is False  # the baseline is kept


def agg(window, **kw):
    return pattern("aggregate", geofence_id="A", window=window, **kw)


def test_aggregate_hopping_event_on_a_hop_boundary_opens_the_window_starting_there():
    p = agg({"type": "hopping", "size_s": 60, "hop_s": 20})
    _, st = feed(p, [ev(1, "ENTER", "A", W0 + 40_000)], key="A")
    assert sorted(w[0] for w in st["w"]) == [W0, W0 + 20_000, W0 + 40_000]


@pytest.mark.parametrize("window", [{"type": "hopping", "size_s": 60, "hop_s": 60},
                                    {"type": "hopping", "size_s": 100, "hop_s": 1},
                                    {"type": "hopping", "size_s": 201, "hop_s": 2},
                                    {"type": "hopping", "size_s": 1, "hop_s": 0.5},
                                    {"type": "tumbling", "size_s": 0.5}])
def test_aggregate_windows_at_their_limits_are_accepted(window):
    assert agg(window).params.window == window["type"]


@pytest.mark.parametrize("window,reason", [
    ("tumbling", "window must be {type: tumbling | hopping | session, ...}"),
    ({"type": "sliding"}, "window must be {type: tumbling | hopping | session, ...}"),
    ({"type": "hopping", "size_s": 60, "hop_s": 61}, "hop_s must be at most size_s, and size_s / hop_s at most 100"),
    ({"type": "hopping", "size_s": 101, "hop_s": 1}, "hop_s must be at most size_s, and size_s / hop_s at most 100"),
    ({"type": "session"}, "gap_s must be a number in (0, 604800]"),
])
def test_aggregate_refused_windows_say_why(window, reason):
    with pytest.raises(ValidationError) as refused:
        agg(window)
    assert str(refused.value) == reason


def test_aggregate_state_counts_late_events_and_never_goes_below_zero_occupancy():
    p = agg({"type": "tumbling", "size_s": 60})
    st = p.impl.initialize(p)
    assert st == {"m": 0, "wm": 0, "occ": 0, "late": 0, "w": []} and p.impl.keyed_by(p.params) == "geofence"
    assert (p.params.window, p.params.size_ms, p.params.hop_ms, p.params.geofence_id) == ("tumbling", 60_000, 0, "A")
    _, st = feed(p, [ev(1, "EXIT", "A", W0 + 1_000), ev(2, "EXIT", "A", W0 - 1), ev(3, "EXIT", "A", W0 - 2)],
                 key="A", st=st)
    assert st["occ"] == 0 and st["late"] == 2 and st["w"] == [[W0, W0 + 60_000, W0 + 1_000, 0, 1, 0, 0, 0]]
    assert [a.record()["late_events"] for a in p.impl.publish(p, st, "A")] == [2]
    closed = p.impl.tick(p, st, 0, W0 + 60_000, "A")
    assert [(a.key, a.closed, a.late, a.pattern.pattern_id) for a in closed] == [(f"t/p|A|{W0}", True, 2, "p")]


def test_aggregate_session_edges_are_exclusive_and_growing_backwards_moves_the_record():
    p = agg({"type": "session", "gap_s": 10}, lateness_s=600)
    _, st = feed(p, [ev(1, "ENTER", "A", W0 + 100_000)], key="A")
    _, st = feed(p, [ev(2, "ENTER", "A", W0 + 110_000), ev(3, "ENTER", "A", W0 + 90_000)], key="A", st=st)
    assert sorted(w[0] for w in st["w"]) == [W0 + 90_000, W0 + 100_000, W0 + 110_000]  # exactly gap apart: apart
    out, st = feed(p, [ev(4, "ENTER", "A", W0 + 85_000)], key="A", st=st)  # within gap before the first
    assert [(type(o).__name__, o.key, o.pattern.pattern_id) for o in out] == [
        ("AggregateGone", f"t/p|A|{W0 + 90_000}", "p")]
    assert sorted(w[0] for w in st["w"]) == [W0 + 85_000, W0 + 100_000, W0 + 110_000]


# -- stats --------------------------------------------------------------------------------------
def test_welford_std_needs_two_samples():
    from streams.cep.kinds.stats import welford_add, welford_std
    s = [0, 0.0, 0.0]
    assert welford_std(s) == 0.0
    welford_add(s, 0.0)
    assert welford_std(s) == 0.0  # one sample: no spread, not a division by zero
    welford_add(s, 1.0)
    assert s == [2, 0.5, 0.5] and welford_std(s) == pytest.approx(statistics.stdev([0.0, 1.0]))


def test_ewma_counts_zeros_and_keeps_variance_non_negative():
    from streams.cep.kinds.stats import ewma_add
    s = [0, 0.0, 0.0]
    ewma_add(s, 0, 0.5)
    ewma_add(s, 0, 0.5)
    assert s == [2, 0.0, 0.0]  # a mean of 0 is a baseline, not "no baseline yet"
    ewma_add(s, 4, 0.5)
    assert s == [3, 2.0, 4.0]  # mean 0 + 0.5 * 4; variance (1 - 0.5) * (0 + 0.5 * 16)


def test_aggregate_session_started_by_an_exit_of_an_empty_fence_has_occupancy_zero():
    p = agg({"type": "session", "gap_s": 10}, lateness_s=600)
    _, st = feed(p, [ev(1, "EXIT", "A", W0)], key="A")
    assert st["w"] == [[W0, W0 + 10_000, W0, 0, 1, 0, 0, 0]]
