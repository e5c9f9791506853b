"""Every comparison of the pure core pinned at its boundary: exactly on it and one unit either
side. Each test names what the boundary means to a GIS user; the module's docstring says the
same. A `>=` flipped to `>` (or `<=` to `<`) anywhere here fails a test."""

import pytest
from shapely.geometry import MultiPolygon, Polygon, box

from geoflux.errors import ValidationError
from streams.cep.patterns import parse_pattern
from streams.fence_index import FenceIndex
from streams.geofence import FenceSpec, _split_antimeridian, build_fence, parse_feature, snap_to_range
from streams.membership import EntityState, MembershipMachine, Update
from streams.state.timers import due_keys, timer_entry

BASE = {"pattern_id": "p", "tenant_id": "t", "severity": "high"}
LATENESS = 10_000


def ev(i, etype, gid, ts, entity="e1", lon=0.0, lat=0.0):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity, "tenant_id": "t", "lon": lon, "lat": lat, "attributes": {}}


def feed(pattern, events, key="e1", st=None):
    st = pattern.impl.initialize(pattern) if st is None else st
    out = []
    for e in events:
        out += pattern.impl.feed(pattern, st, e, key)
    return out, st


# -- membership ---------------------------------------------------------------------------------
def machine(dwell=None):
    idx = FenceIndex()
    idx.upsert(build_fence("A", 1, FenceSpec(box(0, 0, 1, 1), "A", "t", dwell, None)))
    return MembershipMachine(idx, LATENESS)


def apply(m, state, lon, ts):
    return m.apply(state, Update("e1", "t", lon, 0.5, ts), m.index.zones([lon], [0.5])[0])


@pytest.mark.parametrize("at,fires", [(9_999, False), (10_000, True), (10_001, True)])
def test_dwell_fires_on_an_update_exactly_when_due(at, fires):
    """DWELL is due at ENTER + dwell_seconds; an update at that very millisecond fires it."""
    m, state = machine(dwell=10), EntityState("e1", "t")
    apply(m, state, 0.5, 0)
    kinds = [t.event_type for t in apply(m, state, 0.5, at).transitions]
    assert kinds == (["DWELL"] if fires else [])


@pytest.mark.parametrize("now,fires", [(9_999, False), (10_000, True), (10_001, True)])
def test_dwell_timer_fires_exactly_when_due(now, fires):
    m, state = machine(dwell=10), EntityState("e1", "t")
    apply(m, state, 0.5, 0)
    assert [t.ts_ms for t in m.due_dwells(state, now)] == ([10_000] if fires else [])


@pytest.mark.parametrize("behind,kind", [(LATENESS - 1, "applied"), (LATENESS, "applied"),
                                         (LATENESS + 1, "late")])
def test_an_update_exactly_lateness_behind_is_still_placed(behind, kind):
    """Allowed lateness is inclusive: `lateness_ms` behind the newest update is in time."""
    m, state = machine(), EntityState("e1", "t")
    apply(m, state, 0.5, 50_000)
    assert apply(m, state, -1, 50_000 - behind).kind == kind


# -- geometry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("east,crosses", [(89.999999, False), (90.0, False), (90.000001, True)])
def test_antimeridian_split_starts_past_a_half_world(east, crosses):
    """A ring spanning exactly 180 degrees of longitude is taken as drawn (a hemisphere-wide
    fence is legitimate); only a jump of MORE than 180 degrees means it crosses the antimeridian."""
    ring = [(-90.0, 0.0), (east, 0.0), (east, 1.0), (-90.0, 1.0), (-90.0, 0.0)]
    out = _split_antimeridian(ring)
    assert isinstance(out, MultiPolygon if crosses else Polygon)
    if not crosses:
        assert out.bounds == (-90.0, 0.0, east, 1.0)


@pytest.mark.parametrize("value,snapped", [
    (180.0, 180.0), (-180.0, -180.0), (179.9999, 179.9999),
    (180.0 + 1e-9, 180.0), (-180.0 - 1e-9, -180.0),   # float noise at the edge: snapped
    (180.0 + 2e-9, None), (-180.0 - 2e-9, None)])     # past the noise: out of range
def test_coordinates_snap_within_float_noise_of_the_edge_only(value, snapped):
    assert snap_to_range(value, 180) == snapped


def square(n_extra=0):
    ring = [[0, 0], [1, 0], [1, 1], [0, 1]] + [[0, 1 - (i + 1) / 1000] for i in range(n_extra)] + [[0, 0]]
    return {"type": "Feature", "properties": {"name": "S", "tenant_id": "t"},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


@pytest.mark.parametrize("limit,ok", [(4, False), (5, True), (6, True)])
def test_vertex_limit_is_inclusive(limit, ok):
    if ok:
        parse_feature(square(), max_vertices=limit)  # 5 positions, the closing one included
    else:
        with pytest.raises(ValidationError, match="exceed the limit of 4"):
            parse_feature(square(), max_vertices=limit)


@pytest.mark.parametrize("radius,ok", [(0, False), (0.001, True), (500.0, True), (500.001, False)])
def test_circle_radius_is_in_zero_exclusive_to_the_limit_inclusive(radius, ok):
    feature = {"type": "Feature", "properties": {"name": "C", "tenant_id": "t", "radius_m": radius},
               "geometry": {"type": "Point", "coordinates": [10.0, 50.0]}}
    if ok:
        parse_feature(feature, max_vertices=1000, max_radius_m=500.0)
    else:
        with pytest.raises(ValidationError, match="radius_m"):
            parse_feature(feature, max_vertices=1000, max_radius_m=500.0)


def test_a_ring_needs_four_positions():
    three = {"type": "Feature", "properties": {"name": "T", "tenant_id": "t"},
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}}
    with pytest.raises(ValidationError, match="at least 4 positions"):
        parse_feature(three, max_vertices=100)
    parse_feature(square(), max_vertices=100)  # exactly 4 distinct + closing: accepted


# -- timers -------------------------------------------------------------------------------------
def test_a_timer_due_exactly_now_is_due():
    entries = [timer_entry(99, "a"), timer_entry(100, "b"), timer_entry(101, "c")]
    assert due_keys(entries, 100) == ["a", "b"]
    assert due_keys(entries, 99) == ["a"]
    assert due_keys(entries, 101, limit=2) == ["a", "b"]  # the limit is a count, inclusive
    assert due_keys(entries, 101, limit=3) == ["a", "b", "c"]


# -- CEP kinds ----------------------------------------------------------------------------------
ABSENCE = parse_pattern({**BASE, "kind": "absence", "within_s": 60,
                         "trigger": {"event_type": "ENTER", "geofence_id": "A"},
                         "expected": {"event_type": "ENTER", "geofence_id": "B"}})


@pytest.mark.parametrize("at,absent", [(59_999, False), (60_000, False), (60_001, True)])
def test_absence_an_expected_event_exactly_at_the_deadline_is_in_time(at, absent):
    """Within T is inclusive: the expected event at trigger + T arrives in time; one ms later
    it does not, and the (later) event proves the absence."""
    out, _ = feed(ABSENCE, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", at)])
    assert [m.detail.get("proven_by") for m in out] == (["ev2"] if absent else [])


@pytest.mark.parametrize("at,proves", [(60_000, False), (60_001, True)])
def test_absence_an_unrelated_event_proves_it_only_past_the_deadline(at, proves):
    out, st = feed(ABSENCE, [ev(1, "ENTER", "A", 0), ev(2, "EXIT", "C", at)])
    assert len(out) == int(proves) and len(st) == int(not proves)


@pytest.mark.parametrize("settled,fires", [(59_999, False), (60_000, True)])
def test_absence_timer_fires_once_the_deadline_is_settled(settled, fires):
    """Every event at or before `settled` has been seen, so the deadline itself settled is enough."""
    _, st = feed(ABSENCE, [ev(1, "ENTER", "A", 0)])
    assert len(ABSENCE.impl.tick(ABSENCE, st, settled, settled, "e1")) == int(fires)
    assert ABSENCE.impl.due(ABSENCE, st) == (None if fires else 60_000)


def test_absence_an_expected_event_at_the_trigger_instant_counts():
    out, st = feed(ABSENCE, [ev(1, "ENTER", "A", 1_000), ev(2, "ENTER", "B", 1_000)])
    assert out == [] and st == []
    _, st = feed(ABSENCE, [ev(1, "ENTER", "B", 999), ev(2, "ENTER", "A", 1_000)])
    assert len(st) == 1  # an expected event BEFORE the trigger does not


CONVOY = parse_pattern({**BASE, "kind": "comovement", "within_s": 60, "at_least": 2})


@pytest.mark.parametrize("gap,convoy", [(59_999, True), (60_000, True), (60_001, False)])
def test_convoy_entries_exactly_T_apart_are_within_T(gap, convoy):
    out, _ = feed(CONVOY, [ev(1, "ENTER", "G", 0, "a"), ev(2, "ENTER", "G", gap, "b")], key="G")
    assert len(out) == int(convoy)


def test_convoy_needs_at_least_two():
    with pytest.raises(ValidationError, match="at_least 2"):
        parse_pattern({**BASE, "kind": "comovement", "within_s": 60, "at_least": 1})
    parse_pattern({**BASE, "kind": "comovement", "within_s": 60, "at_least": 2})


@pytest.mark.parametrize("gap,together", [(59_999, True), (60_000, False), (60_001, False)])
def test_count_window_is_half_open(gap, together):
    """count slides a half-open window [t - T, t): two events exactly T apart are in different
    windows (unlike sequence, comovement and join, whose "within T" includes T)."""
    p = parse_pattern({**BASE, "kind": "count", "within_s": 60, "at_least": 2,
                       "event": {"event_type": "EXIT"}})
    out, st = feed(p, [ev(1, "EXIT", "G", 0), ev(2, "EXIT", "G", gap)])
    assert len(out) == int(together)
    out, st = feed(p, [ev(1, "EXIT", "G", 0), ev(2, "EXIT", "H", gap)])
    assert list(st) == (["G", "H"] if together else ["H"])  # another fence's window slid too


@pytest.mark.parametrize("gap,joined", [(119_999, True), (120_000, True), (120_001, False)])
def test_join_sides_exactly_T_apart_join(gap, joined):
    p = parse_pattern({**BASE, "kind": "join", "within_s": 120,
                       "left": {"event_type": "ENTER", "entity_prefix": "truck-"},
                       "right": {"event_type": "ENTER", "entity_prefix": "car-"}})
    out, _ = feed(p, [ev(1, "ENTER", "D", 0, "truck-1"), ev(2, "ENTER", "D", gap, "car-1")], key="D")
    assert len(out) == int(joined)


@pytest.mark.parametrize("gap,matched", [(29_999, True), (30_000, True), (30_001, False)])
def test_sequence_completed_exactly_T_after_its_start_matches(gap, matched):
    p = parse_pattern({**BASE, "kind": "sequence", "within_s": 30,
                       "steps": [{"event_type": "ENTER", "geofence_id": "A"},
                                 {"event_type": "ENTER", "geofence_id": "B"}]})
    out, _ = feed(p, [ev(1, "ENTER", "A", 0), ev(2, "ENTER", "B", gap)])
    assert len(out) == int(matched)


def time_of_day(fh, th):
    return parse_pattern({**BASE, "kind": "time_of_day", "geofence_id": "G", "from_hour": fh, "to_hour": th})


@pytest.mark.parametrize("fh,th,inside,outside", [
    (22, 6, [22, 23, 0, 5], [21, 6, 12]),   # across midnight: 22:00 up to, not including, 06:00
    (8, 17, [8, 16], [7, 17, 0]),           # the first hour counts, the closing hour does not
    (0, 24, [0, 23], []),
    (23, 0, [23], [22, 0]),
])
def test_time_of_day_includes_the_first_hour_and_excludes_the_last(fh, th, inside, outside):
    params = time_of_day(fh, th).params
    assert [params.in_hours(h) for h in inside] == [True] * len(inside)
    assert [params.in_hours(h) for h in outside] == [False] * len(outside)


@pytest.mark.parametrize("fh,th,ok", [(0, 24, True), (-1, 6, False), (22, 25, False), (24, 6, True)])
def test_time_of_day_hours_are_0_to_24(fh, th, ok):
    if ok:
        time_of_day(fh, th)
    else:
        with pytest.raises(ValidationError, match="0-24"):
            time_of_day(fh, th)


@pytest.mark.parametrize("silent,fires", [(119_999, False), (120_000, True)])
def test_track_gap_fires_when_silent_for_exactly_T(silent, fires):
    p = parse_pattern({**BASE, "kind": "track_gap", "within_s": 120})
    st = p.impl.initialize(p)
    p.impl.on_location(p, st, {"ts_ms": 1_000, "lon": 0.0, "lat": 0.0}, "e1")
    assert len(p.impl.tick(p, st, 1_000 + silent, 1_000 + silent, "e1")) == int(fires)


@pytest.mark.parametrize("third,matched", [(59_999, True), (60_000, False)])
def test_count_drops_the_event_exactly_T_old_from_a_busy_window(third, matched):
    p = parse_pattern({**BASE, "kind": "count", "within_s": 60, "at_least": 3,
                       "event": {"event_type": "EXIT"}})
    out, _ = feed(p, [ev(1, "EXIT", "G", 0), ev(2, "EXIT", "G", 30_000), ev(3, "EXIT", "G", third)])
    assert len(out) == int(matched)
