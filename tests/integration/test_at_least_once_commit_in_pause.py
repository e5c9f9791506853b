"""An at-least-once worker committing every 0.2 s while the broker is SIGSTOPped past its
session timeout. The client lets one caller at a time into a consumer: a synchronous commit
waiting for the away coordinator held the poll thread, and the loop awaiting it, until the
broker answered again. Work already read did not start, and the lost partitions' rebalance
was served only after that commit failed: the sequence the job worker logged in a run of
the fault matrix whose jobs cell never settled. Commits are now asynchronous and sent from
the poll thread (streams/runtime/at_least_once.py)."""

import os
import signal
import time

import pytest

from schemas.catalogue import topic
from tests.conftest import wait_for
from tests.integration.alo_recorder import Recorder, produce_round_robin, run_in_thread, three_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WORK_S = 0.2
SLOTS = 4


class Committing(Recorder):
    """Work that takes a moment, a few at a time, committed at the default interval: a
    commit is under way whenever the broker stops."""
    stage = "commit-pause-test"
    max_in_flight = SLOTS
    work_s = WORK_S

    def __init__(self, kafka, topics) -> None:
        super().__init__(kafka, topics)
        self.assignments: list[list] = []

    def assigned(self, partitions) -> None:
        self.assignments.append(sorted((tp.topic, tp.partition) for tp in partitions))


def test_a_commit_waiting_for_a_stopped_broker_holds_neither_work_nor_rebalance(pausable):
    kafka, t, producer = three_partitions(pausable.bootstrap, "c.")

    def send(start: int, n: int) -> None:
        produce_round_robin(producer, t, start, n)

    worker = Committing(kafka, [t, topic("jobs.retry", kafka)])
    runner = run_in_thread(worker)
    pid = pausable.pid()
    try:
        send(0, 60)
        assert producer.flush(60) == 0
        wait_for(lambda: len(worker.finished) >= 8, 60, what="work under way")
        os.kill(pid, signal.SIGSTOP)  # past the 6 s session timeout: the group loses the member
        stopped_at, at_stop = time.monotonic(), len(worker.finished)
        try:
            send(60, 30)  # queued in the producer until the broker is back
            # ~50 records already read, 0.2 s each, 4 at a time: ~2.5 s of work that needs no
            # broker. A poll held by a commit let only what had started finish (4 at most)
            wait_for(lambda: len(worker.finished) >= at_stop + 3 * SLOTS, 5,
                     what="work read before the pause to go on starting while the broker is stopped")
            # the lost assignment is served when the session times out, not when the broker
            # answers the commit again (30 s later)
            wait_for(lambda: worker.lost_at, 20, what="the lost partitions' rebalance served")
            assert worker.lost_at[0] - stopped_at < 15
            time.sleep(max(0.0, 30 - (time.monotonic() - stopped_at)))  # the fault's duration
        finally:
            os.kill(pid, signal.SIGCONT)
        assert producer.flush(60) == 0
        wait_for(lambda: {(p, o) for p, o in worker.finished} >= {(i % 3, i // 3) for i in range(90)},
                 120, what="every record worked after the broker came back")
        # the rejoin follows the broker's return; the records above may all have been read
        # before the pause began, so their being worked does not imply it happened yet
        wait_for(lambda: len(worker.assignments) >= 2, 120, what="assigned again after the loss")
        # records of the lost partitions read again after the loss may still be in hand: each
        # is worked once more (at least once), and then nothing is left pending
        wait_for(lambda: worker.tracker.pending() == 0, 60, what="nothing left pending")
        # the offsets of all that work are committed, so a successor re-reads nothing
        wait_for(lambda: worker.tracker.committable() == {}, 30, what="every offset committed")
    finally:
        worker.stop()
        runner.join(30)
