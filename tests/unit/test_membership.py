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
    return MembershipMachine(idx, LATENESS, history_len=8)


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
