"""A consumer that no longer takes part in its group is noticed, and one waiting for a
rebalance or a broker within the limit is not."""

from __future__ import annotations

import json
import subprocess
import sys

from streams.runtime.group_health import GroupHealth


def stats(state: str = "up", join_state: str = "steady") -> str:
    # the shape librdkafka's stats_cb hands over, trimmed to what is read
    return json.dumps({"name": "rdkafka#consumer-1", "type": "consumer", "brokers": {},
                       "cgrp": {"state": state, "stateage": 1200, "join_state": join_state,
                                "rebalance_age": 900, "rebalance_cnt": 1, "assignment_size": 3}})


def test_a_steady_member_is_healthy_however_long_it_runs():
    h = GroupHealth(stall_s=60, since=0)
    for t in range(0, 600, 5):
        h.observe(stats(), t)
        assert h.stalled(t + 4) is None


def test_a_fresh_consumer_has_the_limit_to_join():
    h = GroupHealth(stall_s=60, since=100)
    h.observe(stats("wait-coord", "init"), 105)
    assert h.stalled(159) is None
    why = h.stalled(161)
    assert why is not None and "not been joined for 61 s" in why and "wait-coord/init" in why


def test_a_rebalance_shorter_than_the_limit_passes_and_a_stuck_one_does_not():
    h = GroupHealth(stall_s=60, since=0)
    h.observe(stats(), 10)
    for t in range(15, 65, 5):  # 50 s of a slow rebalance
        h.observe(stats("up", "wait-unassign-to-complete"), t)
        assert h.stalled(t) is None
    h.observe(stats(), 65)
    assert h.stalled(120) is None
    for t in range(70, 135, 5):  # the coordinator lost and never found again
        h.observe(stats("query-coord", "wait-unassign-to-complete"), t)
    assert "query-coord/wait-unassign-to-complete" in h.stalled(130)


def test_statistics_that_stop_arriving_mean_a_stuck_polling_thread():
    h = GroupHealth(stall_s=60, since=0)
    h.observe(stats(), 30)
    assert h.stalled(90) is None
    assert "no consumer statistics for 61 s" in h.stalled(91)


def test_a_group_never_steady_without_statistics_is_reported_from_the_start():
    h = GroupHealth(stall_s=60, since=0)
    assert h.stalled(60) is None
    assert "no consumer statistics" in h.stalled(61)


def test_the_watch_ends_the_process_for_its_supervisor_and_stops_when_told():
    code = """
import time, structlog
from streams.runtime.restart import exit_when
log = structlog.get_logger("t")
stopped = exit_when(lambda: None, log, "quiet", every_s=0.02)
time.sleep(0.2); stopped.set()
calls = []
exit_when(lambda: calls.append(1) or (None if len(calls) < 3 else "stuck for a test"), log, "t", every_s=0.02)
time.sleep(10)
raise SystemExit(0)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done.stderr
    assert "stuck for a test; exiting for the supervisor" in done.stdout + done.stderr


def stalled_after_a_minute_of(sample: str) -> str | None:
    """The reason given after a minute of the same statistics, every 5 s, at a 60 s limit."""
    h = GroupHealth(stall_s=60, since=0)
    for t in range(0, 65, 5):
        h.observe(sample, t)
    return h.stalled(61)


def test_up_is_not_enough_a_join_that_never_ends_stalls():
    assert "(last state up/wait-join)" in stalled_after_a_minute_of(stats("up", "wait-join"))
    # steady join state while the coordinator is being looked for
    assert "(last state wait-coord/steady)" in stalled_after_a_minute_of(stats("wait-coord", "steady"))


def test_the_reason_says_when_no_group_state_was_ever_reported():
    for sample in ({"name": "c", "cgrp": {}}, {"name": "c"}):
        assert stalled_after_a_minute_of(json.dumps(sample)).endswith("(last state ?/?)")


def test_an_assignment_counts_as_joined_between_two_samples():
    h = GroupHealth(stall_s=60, since=0)
    for t in range(0, 50, 5):
        h.observe(stats("up", "wait-sync"), t)
    h.joined(52)  # steady only between the samples at 50 and 55
    for t in range(55, 115, 5):
        h.observe(stats("up", "wait-join"), t)
    assert h.stalled(112) is None and h.stalled(113) is not None


def test_a_group_that_never_starts_joining_points_at_missing_topics():
    assert "no subscribed topic exists" in stalled_after_a_minute_of(stats("up", "init"))
    assert "topic" not in stalled_after_a_minute_of(stats("wait-coord", "init"))
