"""The evaluator's secondary index keys, byte for byte: a fence edit finds the entities it can
concern by these prefixes and ranges, so a key one byte off is an entity the edit never
re-evaluates (a missed EXIT), and a timer entry that is wrong is a DWELL that never fires."""

import pytest

from streams.entity_history import History, Seen
from streams.evaluator_index import (
    CELL_DEG,
    cell,
    entity_index_keys,
    grid_columns,
    grid_key,
    members_prefix,
)
from streams.membership import EntityState, Membership
from streams.state.timers import parse_timer


@pytest.mark.parametrize("lon,lat,xy", [
    (0.0, 0.0, (18_000, 9_000)),
    (13.404954, 52.520008, (19_340, 14_252)),  # Berlin: floor, not round
    (-0.005, -0.005, (17_999, 8_999)),  # just west and south of 0/0: floor, not truncation
    (-180.0, -90.0, (0, 0)),
    (180.0, 90.0, (35_999, 17_999)),  # the east and north edges belong to the last cell
    (-200.0, -100.0, (0, 0)),
    (200.0, 100.0, (35_999, 17_999)),
])
def test_cell_of_a_position(lon, lat, xy):
    assert cell(lon, lat) == xy


def test_cells_are_a_hundredth_of_a_degree():
    assert CELL_DEG == 0.01
    assert cell(0.0099, 0.0) == (18_000, 9_000) and cell(0.01, 0.0) == (18_001, 9_000)


def state(*points, memberships=()):
    s = EntityState("e1", "t", memberships={m.geofence_id: m for m in memberships},
                    history=History([Seen(ts, lon, lat, ()) for ts, lon, lat in points]))
    return s


def test_entity_index_keys_name_fences_pending_timers_and_the_last_cell():
    s = state((1_000, 0.0, 0.0), (2_000, 13.404954, 52.520008), memberships=(
        Membership("A", 1, 0, dwell_due_ms=5_000),
        Membership("B", 1, 0, dwell_due_ms=7_000, dwell_fired=True),  # fired: no timer left
        Membership("C", 2, 0)))
    assert entity_index_keys("t/e1", s) == [
        b"mt/A\x00t/e1", b"t0000000000005000\x00t/e1",
        b"mt/B\x00t/e1",
        b"mt/C\x00t/e1",
        b"gt\x001934014252\x00t/e1"]
    assert parse_timer(b"t0000000000005000\x00t/e1") == (5_000, "t/e1")


def test_an_entity_never_seen_has_no_grid_entry():
    assert entity_index_keys("t/e1", state()) == []
    assert entity_index_keys("t/e1", state(memberships=(Membership("A", 1, 0),))) == [b"mt/A\x00t/e1"]


def test_members_prefix():
    assert members_prefix("t/A") == b"t/A\x00"


def test_grid_columns_cover_the_box_one_column_each_stop_exclusive():
    assert grid_columns("t", (0.0, 0.0, 0.02, 0.01)) == [
        (b"t\x001800009000", b"t\x001800009002"),
        (b"t\x001800109000", b"t\x001800109002"),
        (b"t\x001800209000", b"t\x001800209002")]


@pytest.mark.parametrize("lon,lat,inside", [(0.015, 0.005, True), (0.0, 0.0, True), (0.0299, 0.0199, True),
                                            (0.03, 0.01, False), (0.01, 0.02, False), (-0.001, 0.0, False)])
def test_an_entity_last_seen_in_the_box_falls_in_a_column_range(lon, lat, inside):
    entry = next(k for k in entity_index_keys("t/e1", state((1, lon, lat))) if k.startswith(b"g"))[1:]
    ranges = grid_columns("t", (0.0, 0.0, 0.025, 0.015))
    assert any(lo <= entry < hi for lo, hi in ranges) == inside
    assert grid_key(entry) == "t/e1"


def test_grid_key_keeps_everything_after_the_cell():
    assert grid_key(b"t\x001800009000\x00t/a\x00b") == "t/a\x00b"
