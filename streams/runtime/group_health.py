"""Whether a consumer still takes part in its group, judged from librdkafka's statistics. Pure.

A consumer can stop taking work without failing: its group coordinator unknown, a commit queued
for it that never leaves, no assignment for minutes, no error anywhere. librdkafka reports its
group's state in the statistics it emits every `statistics.interval.ms` (`cgrp.state`,
`cgrp.join_state`); a group that has not been `up` and `steady` for `stall_s`, or statistics
that stop arriving (the thread that polls the consumer is stuck inside a call), mean the worker
is stuck rather than waiting. The shell then exits for its supervisor: a new process joins
afresh, and what was not committed is read again.

`stall_s` must exceed the longest wait a healthy member can see: a rebalance lasts at most the
group's `max.poll.interval.ms`, and a broker away for longer than `stall_s` ends the worker too
(its supervisor starts it again, and it waits for the broker like any starting worker)."""

from __future__ import annotations

import json

STATS_INTERVAL_MS = 5_000


class GroupHealth:
    def __init__(self, stall_s: float, since: float) -> None:
        self.stall_s = stall_s
        self.since = since  # monotonic time the watch started: a fresh consumer has stall_s to join
        self.last_stats: float | None = None
        self.last_steady: float | None = None
        self.state = "none"  # the last state seen, for the reason given at exit

    def observe(self, stats_json: str, now: float) -> None:
        """Statistics as librdkafka's `stats_cb` hands them over."""
        cgrp = json.loads(stats_json).get("cgrp") or {}
        self.last_stats = now
        self.state = f"{cgrp.get('state', '?')}/{cgrp.get('join_state', '?')}"
        if cgrp.get("state") == "up" and cgrp.get("join_state") == "steady":
            self.last_steady = now

    def joined(self, now: float) -> None:
        """An assignment arrived: the group was joined, however briefly steady it was between
        two samples of the statistics."""
        self.last_steady = now

    def stalled(self, now: float) -> str | None:
        """Why the consumer is stuck, or None while it is not."""
        last_stats = self.since if self.last_stats is None else self.last_stats
        if now - last_stats > self.stall_s:
            return f"no consumer statistics for {now - last_stats:.0f} s (its polling thread is stuck)"
        last_steady = self.since if self.last_steady is None else self.last_steady
        if now - last_steady > self.stall_s:
            hint = " (the coordinator answers but no join starts, as when no subscribed topic exists)" \
                if self.state == "up/init" else ""
            return (f"the consumer group has not been joined for {now - last_steady:.0f} s "
                    f"(last state {self.state}){hint}")
        return None
