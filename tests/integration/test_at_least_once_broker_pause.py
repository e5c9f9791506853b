"""An at-least-once worker (the shell of alert delivery and jobs) through a broker paused past
its session timeout, holding finished work not yet committed: the group takes its partitions
away without a handover (they are "lost"), and when the broker is back the worker takes work
again, every record worked (a finished one whose commit was lost may be worked again: at
least once). The fault matrix found the job worker taking no work after such a pause; lost
partitions now skip the revocation's commit, and a rebalance waits for cancelled work only a
bounded time (streams/runtime/at_least_once.py)."""

import os
import signal
import time

import pytest

from tests.conftest import wait_for
from tests.integration.alo_recorder import Recorder, produce_round_robin, run_in_thread, three_partitions

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class Holding(Recorder):
    """Each record is work that takes a moment."""
    stage = "pause-test"
    # finished work waits to be committed, so the partitions are lost holding some: what the
    # revocation would commit
    commit_interval_s = 60.0


def test_a_worker_whose_partitions_are_lost_to_a_paused_broker_takes_work_again(pausable):
    kafka, t, producer = three_partitions(pausable.bootstrap, "p.")

    def send(start: int, n: int) -> None:
        produce_round_robin(producer, t, start, n)
        assert producer.flush(60) == 0

    worker = Holding(kafka, [t])
    runner = run_in_thread(worker)
    try:
        send(0, 30)
        wait_for(lambda: len(set(worker.finished)) == 30, 60, what="the first 30 records worked")
        pid = pausable.pid()
        os.kill(pid, signal.SIGSTOP)  # past the 6 s session timeout: the group loses the member
        try:
            time.sleep(15)  # the fault's duration
        finally:
            os.kill(pid, signal.SIGCONT)
        send(30, 30)
        wait_for(lambda: len(set(worker.finished)) == 60, 120,
                 what="the worker to take work again after the broker came back")
        assert worker.lost_at, "the pause did cost the member its partitions"
        by_offset = {}
        for p, o in worker.finished:
            by_offset[(p, o)] = by_offset.get((p, o), 0) + 1
        # a record finished before the pause and not yet committed may be worked again by the
        # partitions' new owner (at least once); what was committed never is
        assert set(by_offset) == {(i % 3, i // 3) for i in range(60)}
    finally:
        worker.stop()
        runner.join(30)
