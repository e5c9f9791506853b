"""The membership state machine, driven through tables of (lon, ts) -> expected events."""

import pytest

from streams.fence_index import FenceIndex
from streams.geofence import FenceSpec, build_fence
from streams.membership import EntityState, MembershipMachine, Update, event_id
from shapely.geometry import box

LATENESS = 10_000


def machine(dwell=None, hysteresis=0.0, tenant="t"):
    idx = FenceIndex()
    # A: lon 0..1, B: lon 2..3, both lat 0..1
    idx.upsert(build_fence("A", 1, FenceSpec(box(0, 0, 1, 1), "A", tenant, dwell, hysteresis)))
    idx.upsert(build_fence("B", 1, FenceSpec(box(2, 0, 3, 1), "B", tenant, None, None)))
    return MembershipMachine(idx, LATENESS)


def run(m, steps, state=None):
    """steps: (lon, ts) at lat 0.5; returns [(type, fence, ts)] and the state."""
    state = state or EntityState("e1", "t")
    seen = []
    for lon, ts in steps:
        upd = Update("e1", "t", lon, 0.5, ts)
        out = m.apply(state, upd, m.index.zones([lon], [0.5])[0])
        seen += [(t.event_type, t.geofence_id, t.ts_ms) for t in out.transitions]
    return seen, state


@pytest.mark.parametrize("steps,expected", [
    ([(-1, 0), (0.5, 1000), (1.5, 2000)], [("ENTER", "A", 1000), ("EXIT", "A", 2000)]),
    ([(0.5, 0), (0.6, 1000), (0.7, 2000)], [("ENTER", "A", 0)]),
    ([(0.5, 0), (2.5, 1000)], [("ENTER", "A", 0), ("EXIT", "A", 1000), ("ENTER", "B", 1000)]),
    ([(1.0, 0), (1.5, 1000)], [("ENTER", "A", 0), ("EXIT", "A", 1000)]),  # boundary is inside
    ([(-1, 0), (-1, 1000)], []),
])
def test_in_order_transitions(steps, expected):
    assert run(machine(), steps)[0] == expected


def test_duplicate_update_produces_nothing_and_conflict_is_rejected():
    m = machine()
    _, state = run(m, [(0.5, 1000)])
    dup = m.apply(state, Update("e1", "t", 0.5, 0.5, 1000), {})
    assert dup.kind == "duplicate" and dup.transitions == ()
    conflict = m.apply(state, Update("e1", "t", 5, 0.5, 1000), {})
    assert conflict.kind == "conflict" and "conflicting duplicate" in conflict.reason


def test_late_beyond_lateness_is_rejected_with_reason():
    m = machine()
    _, state = run(m, [(0.5, 20_000)])
    out = m.apply(state, Update("e1", "t", -1, 0.5, 5_000), m.index.zones([-1], [0.5])[0])
    assert out.kind == "late" and "15000 ms behind" in out.reason


@pytest.mark.parametrize("steps,expected", [
    # inside A at 1000 and 3000, a late report at 2000 outside: a balanced excursion
    ([(0.5, 1000), (0.5, 3000), (-1, 2000)],
     [("ENTER", "A", 1000), ("EXIT", "A", 2000), ("ENTER", "A", 3000)]),
    # outside at 1000 and 3000, a late report inside B at 2000: a brief visit
    ([(-1, 1000), (-1, 3000), (2.5, 2000)], [("ENTER", "B", 2000), ("EXIT", "B", 3000)]),
    # late but consistent with its neighbours: nothing new
    ([(0.5, 1000), (0.5, 3000), (0.6, 2000)], [("ENTER", "A", 1000)]),
    # the neighbours already recorded the transition: its recorded time stands
    ([(-1, 1000), (0.5, 3000), (0.5, 2000)], [("ENTER", "A", 3000)]),
])
def test_late_within_lateness_is_placed_in_order(steps, expected):
    assert run(machine(), steps)[0] == expected


def test_alternation_holds_under_any_order_within_lateness():
    import itertools
    pts = [(-1, 1000), (0.5, 2000), (-1, 3000), (0.5, 4000), (2.5, 5000)]
    for perm in itertools.permutations(pts):
        events, _ = run(machine(), list(perm))
        for fence in "AB":
            kinds = [k for k, f, _ in events if f == fence]
            assert all(a != b for a, b in zip(kinds, kinds[1:])), (perm, events)
            assert not kinds or kinds[0] == "ENTER", (perm, events)


def test_dwell_fires_on_own_update_once():
    m = machine(dwell=10)
    events, state = run(m, [(0.5, 0), (0.5, 5_000), (0.5, 12_000), (0.5, 30_000)])
    assert events == [("ENTER", "A", 0), ("DWELL", "A", 10_000)]


def test_dwell_timer_fires_for_a_silent_entity_and_not_after_exit():
    m = machine(dwell=10)
    _, state = run(m, [(0.5, 0)])
    assert m.due_dwells(state, 9_999) == []
    fired = m.due_dwells(state, 10_000)
    assert [(t.event_type, t.ts_ms) for t in fired] == [("DWELL", 10_000)]
    assert m.due_dwells(state, 20_000) == []
    _, state2 = run(m, [(0.5, 0), (-1, 5_000)])
    assert m.due_dwells(state2, 60_000) == []


def test_dwell_ids_agree_between_timer_and_update_paths():
    m = machine(dwell=10)
    _, s1 = run(m, [(0.5, 0)])
    timer = m.due_dwells(s1, 10_000)[0]
    _, s2 = run(m, [(0.5, 0)])
    own = m.apply(s2, Update("e1", "t", 0.5, 0.5, 11_000), m.index.zones([0.5], [0.5])[0])
    assert own.transitions[0].event_id == timer.event_id


def test_hysteresis_absorbs_jitter_at_the_boundary():
    m = machine(hysteresis=500)
    # west edge at lon 0; ~0.0027 deg = 300 m (inside the band), 0.0090 deg = 1 km
    steps = [(-0.009, 0), (0.0027, 1000), (0.009, 2000), (-0.0027, 3000), (0.0027, 4000),
             (-0.009, 5000)]
    events, _ = run(m, steps)
    assert [(k, f) for k, f, _ in events] == [("ENTER", "A"), ("EXIT", "A")]
    assert [ts for _, _, ts in events] == [2000, 5000]


def test_fence_edit_and_delete_reconcile_membership():
    m = machine()
    _, state = run(m, [(0.5, 1000)])
    # A shrinks away from the entity: EXIT with the new version as source
    m.index.upsert(build_fence("A", 2, FenceSpec(box(0, 0, 0.2, 1), "A", "t", None, None)))
    last = state.last
    out = m.reconcile(state, m.index.zones([last.lon], [last.lat])[0], 5000, only={"t/A"})
    assert [(t.event_type, t.geofence_version, t.source) for t in out] == [("EXIT", 2, "fence:A:v2")]
    # B grows over it: ENTER
    m.index.upsert(build_fence("B", 2, FenceSpec(box(0.4, 0, 3, 1), "B", "t", None, None)))
    out = m.reconcile(state, m.index.zones([last.lon], [last.lat])[0], 6000, only={"t/B"})
    assert [(t.event_type, t.geofence_id) for t in out] == [("ENTER", "B")]
    # B deleted: EXIT for the entity inside
    m.index.remove("t/B")
    out = m.reconcile(state, {}, 7000)
    assert [(t.event_type, t.source) for t in out] == [("EXIT", "fence-deleted:B:v2")]
    assert state.memberships == {}


def test_reconcile_twice_is_idempotent():
    m = machine()
    _, state = run(m, [(0.5, 1000)])
    m.index.remove("t/A")
    first = m.reconcile(state, {}, 5000)
    assert len(first) == 1 and m.reconcile(state, {}, 5000) == []


def test_fences_of_another_tenant_never_apply():
    m = machine(tenant="other")
    assert run(m, [(0.5, 0), (2.5, 1000)])[0] == []


def test_event_id_is_deterministic_and_distinct():
    a = event_id("t", "e", "g", "ENTER", "loc:1")
    assert a == event_id("t", "e", "g", "ENTER", "loc:1")
    assert len({a, event_id("t", "e", "g", "EXIT", "loc:1"), event_id("t", "e", "g", "ENTER", "loc:2"),
                event_id("t", "e2", "g", "ENTER", "loc:1"),
                event_id("t2", "e", "g", "ENTER", "loc:1")}) == 5  # same ids, another tenant


def apply_at(m, state, lon, ts):
    return m.apply(state, Update("e1", "t", lon, 0.5, ts), m.index.zones([lon], [0.5])[0])


def snapshot(state):
    return (list(state.history), state.history.known_from_ms, sorted(state.memberships))


def test_late_update_older_than_eight_points_is_placed():
    """The issue's defect: 20 updates inside A, then one outside A 9.5 s late."""
    m = machine()
    _, state = run(m, [(-1, 0)] + [(0.5, t) for t in range(1000, 21_000, 1000)])
    out = apply_at(m, state, -1, 10_500)
    assert out.kind == "applied"
    assert [(t.event_type, t.ts_ms, t.source) for t in out.transitions] == [
        ("EXIT", 10_500, "loc:10500"), ("ENTER", 11_000, "late:10500:resume")]
    assert sorted(state.memberships) == ["A"]


def test_history_keeps_the_lateness_window_and_the_point_before_it():
    m = machine()
    _, state = run(m, [(0.5, t) for t in range(0, 30_000, 500)])
    # newest 29_500, window from 19_500: the point before it (19_000) is kept as well
    assert state.history.ts[0] == 19_000 and len(state.history) == 22
    assert not state.history.complete


def test_first_update_arriving_late_starts_the_trajectory():
    m = machine()
    _, state = run(m, [(-1, 2000)])
    out = apply_at(m, state, 0.5, 1000)  # the entity's first-ever update, inside A
    assert [(t.event_type, t.ts_ms) for t in out.transitions] == [("ENTER", 1000), ("EXIT", 2000)]
    m2 = machine()
    _, inside = run(m2, [(0.5, 2000)])
    assert apply_at(m2, inside, 0.6, 1000).transitions == ()  # ENTER at 2000 keeps its time
    assert sorted(inside.memberships) == ["A"] and inside.memberships["A"].entered_ms == 2000


def test_cap_exceeded_is_rejected_with_its_own_class_and_changes_nothing():
    m = MembershipMachine(machine().index, LATENESS, max_points=4)
    _, state = run(m, [(0.5, t) for t in range(1000, 9000, 1000)])
    before = snapshot(state)
    out = apply_at(m, state, -1, 2500)
    assert out.kind == "history_exceeded" and out.rejected and out.transitions == ()
    assert "4" in out.reason and "GEOFLUX_GEOFENCE_HISTORY_MAX_POINTS" in out.reason
    assert snapshot(state) == before
    assert apply_at(m, state, -1, 6500).kind == "applied"  # within the kept points: placed


def test_excursion_behind_a_later_transition_is_rejected_and_changes_nothing():
    m = machine()
    _, state = run(m, [(0.5, 1000), (0.5, 3000), (-1, 5000)])  # ENTER 1000, EXIT 5000
    before = snapshot(state)
    out = apply_at(m, state, -1, 2000)  # out of A between 1000 and 3000: too late to say so
    assert out.kind == "late_excursion" and out.rejected
    assert "fence A" in out.reason and "alternation" in out.reason
    assert snapshot(state) == before


def test_late_decisive_update_among_band_updates_changes_membership():
    m = machine(hysteresis=500)
    # outside, then two updates in the band (300 m in): no ENTER; a late one 1 km inside
    _, state = run(m, [(-0.009, 1000), (0.0027, 3000), (0.0027, 4000)])
    assert state.memberships == {}
    out = apply_at(m, state, 0.009, 2000)
    assert [(t.event_type, t.ts_ms) for t in out.transitions] == [("ENTER", 2000)]
    assert sorted(state.memberships) == ["A"] and state.history[-1].inside == ("A",)
    assert [(t.event_type, t.ts_ms) for t in apply_at(m, state, -0.009, 5000).transitions] == [
        ("EXIT", 5000)]


def test_late_update_in_the_band_follows_the_state_before_it():
    m = machine(hysteresis=500)
    # inside, band, outside: EXIT at 3000; a late band update at 1500 changes nothing
    _, state = run(m, [(0.009, 1000), (0.0027, 2000), (-0.009, 3000)])
    assert apply_at(m, state, 0.0027, 1500).transitions == ()
    assert state.history[1].inside == ("A",)
