"""An at-least-once worker committing every 0.2 s while the broker is SIGSTOPped past its
session timeout. The client lets one caller at a time into a consumer: a synchronous commit
waiting for the away coordinator held the poll thread, and the loop awaiting it, until the
broker answered again. Work already read did not start, and the lost partitions' rebalance
was served only after that commit failed: the sequence the job worker logged in a run of
the fault matrix whose jobs cell never settled. Commits are now asynchronous and sent from
the poll thread (streams/runtime/at_least_once.py)."""

import asyncio
import os
import signal
import threading
import time

import pytest
from confluent_kafka import Producer

from connectors.kafka_admin import apply
from connectors.kafka_config import producer_config
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.runtime.at_least_once import AtLeastOnceWorker, Work
from tests.conftest import wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

WORK_S = 0.2
SLOTS = 4


class Recorder(AtLeastOnceWorker):
    """Work that takes a moment, a few at a time, committed at the default interval: a
    commit is under way whenever the broker stops."""
    stage = "commit-pause-test"
    max_in_flight = SLOTS

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(kafka, AvroCodec(), "commit-pause-test",
                         [topic("jobs.requests", kafka), topic("jobs.retry", kafka)])
        self.finished: list[tuple[int, int]] = []
        self.lost_at: list[float] = []
        self.assignments: list[list] = []

    def intake(self, msg) -> None:
        self.hold(Work((msg.topic(), msg.partition()), msg.offset(), {}), 0)

    async def handle(self, work) -> None:
        await asyncio.sleep(WORK_S)
        self.finished.append((work.tp[1], work.offset))
        self.finish(work)

    def assigned(self, partitions) -> None:
        self.assignments.append(sorted((tp.topic, tp.partition) for tp in partitions))

    def _on_lost(self, consumer, partitions) -> None:
        self.lost_at.append(time.monotonic())
        super()._on_lost(consumer, partitions)


def test_a_commit_waiting_for_a_stopped_broker_holds_neither_work_nor_rebalance(pausable):
    kafka = KafkaSettings(bootstrap=pausable.bootstrap, partitions=3, topic_prefix="c.")
    apply(kafka)
    t = topic("jobs.requests", kafka)
    producer = Producer(producer_config(kafka))

    def send(start: int, n: int) -> None:
        for i in range(start, start + n):
            producer.produce(t, key=f"k{i}".encode(), value=b"x", partition=i % 3)
        producer.poll(0)

    worker = Recorder(kafka)
    runner = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    runner.start()
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
        assert len(worker.assignments) >= 2, "assigned again after the loss"
        # records of the lost partitions read again after the loss may still be in hand: each
        # is worked once more (at least once), and then nothing is left pending
        wait_for(lambda: worker.tracker.pending() == 0, 60, what="nothing left pending")
        # the offsets of all that work are committed, so a successor re-reads nothing
        wait_for(lambda: worker.tracker.committable() == {}, 30, what="every offset committed")
    finally:
        worker.stop()
        runner.join(30)
