"""An at-least-once worker whose work is a pause, for the shell's tests through broker faults:
what finished is recorded per (partition, offset), and each loss of partitions is timed."""

from __future__ import annotations

import asyncio
import threading
import time

from confluent_kafka import Producer

from connectors.kafka_admin import apply
from connectors.kafka_config import producer_config
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.runtime.at_least_once import AtLeastOnceWorker, Work


class Recorder(AtLeastOnceWorker):
    work_s = 0.05

    def __init__(self, kafka: KafkaSettings, topics: list[str]) -> None:
        super().__init__(kafka, AvroCodec(), self.stage, topics)
        self.finished: list[tuple[int, int]] = []
        self.lost_at: list[float] = []

    def intake(self, msg) -> None:
        self.hold(Work((msg.topic(), msg.partition()), msg.offset(), {}), 0)

    async def handle(self, work) -> None:
        await asyncio.sleep(self.work_s)
        self.finished.append((work.tp[1], work.offset))
        self.finish(work)

    def _on_lost(self, consumer, partitions) -> None:
        self.lost_at.append(time.monotonic())
        super()._on_lost(consumer, partitions)


def run_in_thread(worker: AtLeastOnceWorker) -> threading.Thread:
    # the stall watch ends its process: here that would be pytest's, so it never fires; the
    # tests' own deadlines say when such a worker is stuck
    worker.health.stall_s = float("inf")
    runner = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    runner.start()
    return runner


def three_partitions(bootstrap: str, prefix: str) -> tuple[KafkaSettings, str, Producer]:
    """The catalogue on 3 partitions under `prefix`, `jobs.requests`' name and a producer."""
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=prefix)
    apply(kafka)
    return kafka, topic("jobs.requests", kafka), Producer(producer_config(kafka))


def produce_round_robin(producer: Producer, t: str, start: int, n: int) -> None:
    """Records `start`..`start + n - 1`, record i on partition i % 3 (its offset then i // 3)."""
    for i in range(start, start + n):
        producer.produce(t, key=f"k{i}".encode(), value=b"x", partition=i % 3)
    producer.poll(0)
