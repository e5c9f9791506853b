"""An at-least-once worker (the shell of alert delivery and jobs) through a broker paused past
its session timeout, holding finished work not yet committed: the group takes its partitions
away without a handover (they are "lost"), and when the broker is back the worker takes work
again, every record worked (a finished one whose commit was lost may be worked again: at
least once). The fault matrix found the job worker taking no work after such a pause; lost
partitions now skip the revocation's commit, and a rebalance waits for cancelled work only a
bounded time (streams/runtime/at_least_once.py)."""

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


class Recorder(AtLeastOnceWorker):
    """Each record is work that takes a moment; what finished is recorded per offset."""
    stage = "pause-test"
    # finished work waits to be committed, so the partitions are lost holding some: what the
    # revocation would commit
    commit_interval_s = 60.0

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(kafka, AvroCodec(), "pause-test", [topic("jobs.requests", kafka)])
        self.finished: list[tuple[int, int]] = []
        self.lost_calls = 0

    def intake(self, msg) -> None:
        self.hold(Work((msg.topic(), msg.partition()), msg.offset(), {}), 0)

    async def handle(self, work) -> None:
        await asyncio.sleep(0.05)
        self.finished.append((work.tp[1], work.offset))
        self.finish(work)

    def _on_lost(self, consumer, partitions) -> None:
        self.lost_calls += 1
        super()._on_lost(consumer, partitions)


def test_a_worker_whose_partitions_are_lost_to_a_paused_broker_takes_work_again(pausable):
    kafka = KafkaSettings(bootstrap=pausable.bootstrap, partitions=3, topic_prefix="p.")
    apply(kafka)
    t = topic("jobs.requests", kafka)
    producer = Producer(producer_config(kafka))

    def send(start: int, n: int) -> None:
        for i in range(start, start + n):
            producer.produce(t, key=f"k{i}".encode(), value=b"x", partition=i % 3)
        assert producer.flush(60) == 0

    worker = Recorder(kafka)
    runner = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    runner.start()
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
        assert worker.lost_calls >= 1, "the pause did cost the member its partitions"
        by_offset = {}
        for p, o in worker.finished:
            by_offset[(p, o)] = by_offset.get((p, o), 0) + 1
        # a record finished before the pause and not yet committed may be worked again by the
        # partitions' new owner (at least once); what was committed never is
        assert set(by_offset) == {(i % 3, i // 3) for i in range(60)}
    finally:
        worker.stop()
        runner.join(30)
