"""The pure pieces of the at-least-once shell: which offset may be committed, and which
read-ahead work starts when."""

from streams.runtime.offset_tracker import OffsetTracker
from streams.runtime.work_queue import Work, WorkQueue

A, B = ("t", 0), ("t", 1)


def test_offset_tracker_commits_lowest_unfinished():
    t, tp = OffsetTracker(), ("x", 0)
    for o in (5, 6, 7):
        t.add(tp, o)
    t.done(tp, 6)
    assert t.committable() == {tp: 5}
    t.committed({tp: 5})
    assert t.committable() == {}
    t.done(tp, 5)
    assert t.committable() == {tp: 7}
    t.done(tp, 7)
    assert t.committable() == {tp: 8}


def test_offset_tracker_forgets_a_revoked_partition_entirely():
    t = OffsetTracker()
    t.add(A, 3)
    t.add(B, 9)
    t.drop(A)
    assert t.committable() == {B: 9} and t.pending() == 1


def test_offset_tracker_from_offset_0_commits_1():
    t = OffsetTracker()
    t.add(A, 0)
    t.done(A, 0)
    assert t.committable() == {A: 1}


def test_offset_tracker_high_mark_is_the_highest_added_not_the_latest():
    """After a seek back (a retried batch), a lower offset added later must not pull the
    committable position below records already finished."""
    t = OffsetTracker()
    for o in (5, 3):
        t.add(A, o)
        t.done(A, o)
    assert t.committable() == {A: 6}


def test_offset_tracker_drop_of_an_unknown_partition_is_a_no_op_and_a_dropped_one_starts_over():
    t = OffsetTracker()
    t.drop(B)  # revoked before anything was read from it
    t.add(A, 0)
    t.done(A, 0)
    t.committed(t.committable())
    assert t.committable() == {}
    t.drop(A)
    t.add(A, 0)  # assigned again: its position is news again, even if it is the same
    t.done(A, 0)
    assert t.committable() == {A: 1}


def drain(q: WorkQueue) -> list[int]:
    out = []
    while (w := q.next_ready()) is not None:
        out.append(w.offset)
    return out


def test_held_work_is_ready_when_due_exactly_and_not_before():
    q = WorkQueue()
    q.hold(Work(A, 1, {}), 10.0)
    q.release(9.999)
    assert q.next_ready() is None and len(q) == 1
    q.release(10.0)
    assert drain(q) == [1] and len(q) == 0


def test_due_work_starts_in_due_order_by_default_and_ties_in_arrival_order():
    q = WorkQueue()
    for offset, due in ((1, 5.0), (2, 3.0), (3, 5.0), (4, 1.0)):
        q.hold(Work(A, offset, {}), due)
    q.release(5.0)
    assert drain(q) == [4, 2, 1, 3]


def test_rank_lets_ready_work_overtake_what_became_due_first():
    q = WorkQueue(rank=lambda w: (-w.record["priority"],))
    q.hold(Work(A, 1, {"priority": 0}), 1.0)
    q.hold(Work(A, 2, {"priority": 9}), 2.0)
    q.hold(Work(A, 3, {"priority": 0}), 3.0)
    q.release(3.0)
    assert drain(q) == [2, 1, 3]


def test_unread_records_come_back_when_due_in_the_order_they_were_set_aside():
    q = WorkQueue()
    q.read_later(A, "m1", 2.0)
    q.read_later(A, "m2", 1.0)
    q.read_later(A, "m3", 2.0)
    assert q.unread_due(0.5) == [] and len(q) == 3
    assert q.unread_due(2.0) == ["m2", "m1", "m3"] and len(q) == 0


def test_a_revoked_partitions_work_is_forgotten_wherever_it_waits():
    q = WorkQueue()
    q.hold(Work(A, 1, {}), 1.0)
    q.hold(Work(B, 2, {}), 1.0)
    q.hold(Work(A, 3, {}), 100.0)
    q.hold(Work(B, 4, {}), 100.0)
    q.read_later(A, "a", 1.0)
    q.read_later(B, "b", 1.0)
    q.release(1.0)
    q.forget({A})
    assert len(q) == 3 and q.unread_due(1.0) == ["b"]
    assert drain(q) == [2]
    q.release(100.0)
    assert drain(q) == [4]


def test_a_slow_step_of_a_stop_is_named_and_a_quick_one_is_not():
    import time

    from structlog.testing import capture_logs

    from streams.runtime.at_least_once import SLOW_STOP_STEP_S, _StopSteps

    with capture_logs() as logs:
        steps = _StopSteps("jobs", time.monotonic() - SLOW_STOP_STEP_S - 1)
        steps.done("the loop seeing the stop")
        steps.done("leaving the group")  # just after the last: quick
    assert [(e["step"], e["stage"]) for e in logs] == [("the loop seeing the stop", "jobs")]
    assert logs[0]["took_s"] >= SLOW_STOP_STEP_S + 1 and logs[0]["log_level"] == "warning"
