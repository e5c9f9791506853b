"""Whole transition records, not only (type, fence, time): the version, position, source and
reason each path of the membership machine writes into the event a subscriber receives."""

from shapely.geometry import box

from streams.fence_index import FenceIndex
from streams.geofence import FenceSpec, build_fence
from streams.membership import EntityState, MembershipMachine, Transition, Update


def machine(dwell=10, version=3):
    idx = FenceIndex()
    idx.upsert(build_fence("A", version, FenceSpec(box(0, 0, 1, 1), "A", "t", dwell, None)))
    return MembershipMachine(idx, 10_000)


def send(m, state, lon, lat, ts):
    return list(m.apply(state, Update("e1", "t", lon, lat, ts), m.index.zones([lon], [lat])[0]).transitions)


def T(kind, version, lon, lat, ts, source, reason=None, gid="A"):
    return Transition(kind, "e1", gid, version, "t", lon, lat, ts, source, reason)


def test_in_order_enter_dwell_exit_records():
    m, st = machine(), EntityState("e1", "t")
    assert send(m, st, 0.5, 0.25, 1_000) == [T("ENTER", 3, 0.5, 0.25, 1_000, "loc:1000")]
    assert send(m, st, 0.6, 0.75, 12_000) == [T("DWELL", 3, 0.6, 0.75, 11_000, "dwell:1000")]
    assert send(m, st, 1.5, 0.5, 13_000) == [T("EXIT", 3, 1.5, 0.5, 13_000, "loc:13000")]


def test_timer_dwell_record_is_at_the_last_position():
    m, st = machine(), EntityState("e1", "t")
    send(m, st, 0.5, 0.25, 1_000)
    send(m, st, 0.7, 0.5, 2_000)
    assert m.next_dwell_due(st) == 11_000
    assert m.due_dwells(st, 11_000) == [T("DWELL", 3, 0.7, 0.5, 11_000, "dwell:1000", "timer")]
    assert m.next_dwell_due(st) is None and m.due_dwells(st, 20_000) == []


def test_a_late_excursion_records_both_halves():
    m, st = machine(dwell=None), EntityState("e1", "t")
    send(m, st, 0.5, 0.5, 1_000)
    send(m, st, 0.6, 0.4, 3_000)
    assert send(m, st, -1.0, 0.5, 2_000) == [
        T("EXIT", 3, -1.0, 0.5, 2_000, "loc:2000", "late update"),
        T("ENTER", 3, 0.6, 0.4, 3_000, "late:2000:resume", "late update")]


def test_a_late_brief_visit_records_both_halves():
    m, st = machine(dwell=None), EntityState("e1", "t")
    send(m, st, -1.0, 0.5, 1_000)
    send(m, st, -2.0, 0.3, 3_000)
    assert send(m, st, 0.5, 0.5, 2_000) == [
        T("ENTER", 3, 0.5, 0.5, 2_000, "loc:2000", "late update"),
        T("EXIT", 3, -2.0, 0.3, 3_000, "late:2000:leave", "late update")]


def test_reconcile_records_and_the_fences_it_is_limited_to():
    m, st = machine(), EntityState("e1", "t")
    send(m, st, 0.5, 0.5, 1_000)
    # A is edited (still around the entity, dwell now 20 s): no event, the new version and due
    m.index.upsert(build_fence("A", 4, FenceSpec(box(0, 0, 2, 1), "A", "t", 20, None)))
    m.index.upsert(build_fence("B", 1, FenceSpec(box(0, 0, 3, 3), "B", "t", None, None)))
    zones = m.index.zones([0.5], [0.5])[0]
    assert m.reconcile(st, zones, 5_000, only={"t/A", "u/B"}) == []  # another tenant's B: not ours
    assert st.memberships["A"].geofence_version == 4 and m.next_dwell_due(st) == 21_000
    assert m.reconcile(st, zones, 500, only={"t/B"}) == [
        T("ENTER", 1, 0.5, 0.5, 1_000, "fence:B:v1", "geofence changed", gid="B")]  # not before the last update
    m.index.upsert(build_fence("A", 5, FenceSpec(box(0.8, 0, 2, 1), "A", "t", None, None)))
    assert m.reconcile(st, m.index.zones([0.5], [0.5])[0], 6_000) == [
        T("EXIT", 5, 0.5, 0.5, 6_000, "fence:A:v5", "geofence changed")]
    m.index.remove("t/B")
    assert m.reconcile(st, {}, 7_000) == [
        T("EXIT", 1, 0.5, 0.5, 7_000, "fence-deleted:B:v1", "geofence deleted", gid="B")]
    assert st.memberships == {} and st.history.inside[-1] == ()


def test_reconcile_of_an_entity_never_seen_does_nothing():
    m = machine()
    assert m.reconcile(EntityState("e1", "t"), {}, 1_000) == []
