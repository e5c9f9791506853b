"""The shell of geoflux's at-least-once workers (alert delivery, geoprocessing jobs): work
with side effects outside Kafka, which no Kafka transaction can cover.

Records are consumed, worked on out of order, and their offsets committed only up to the
lowest unfinished one (`OffsetTracker`), after every output of the finished ones is
acknowledged (acks=all). A crash therefore re-delivers unfinished work and never loses
any; the work itself carries an idempotency key, so a repeat has no second effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from connectors.kafka_config import consumer_config, producer_config
from geoflux.errors import TransientError
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec
from streams.alerting.offsets import OffsetTracker
from schemas.dlq import dlq_record
from streams.sensor import NullStageSensor, StageSensor

log = structlog.get_logger("geoflux.worker")


@dataclass(slots=True)
class Work:
    tp: tuple[str, int]
    offset: int
    record: dict
    extra: Any = None


class AtLeastOnceWorker:
    stage = "worker"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, group: str, topics: list[str],
                 stage_sensor: StageSensor | None = None) -> None:
        self.kafka, self.codec, self.topics = kafka, codec, topics
        self.stage_sensor = stage_sensor or NullStageSensor()
        self.tracker = OffsetTracker()
        self.running = True
        self.paused = False
        self._produce_errors: list[str] = []
        self.consumer = Consumer(consumer_config(kafka, kafka.topic_prefix + group, **{
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 300_000}))
        self.producer = Producer(producer_config(kafka))

    def subscribe(self) -> None:
        self.consumer.subscribe(self.topics, on_revoke=self._on_revoke)

    def _on_revoke(self, consumer, partitions) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        for tp in revoked:
            self.tracker.drop(tp)
        self.forget(revoked)

    def forget(self, revoked: set[tuple[str, int]]) -> None:
        """Drop buffered work of revoked partitions: their new owner re-reads it."""

    def _on_delivery(self, err, msg) -> None:
        if err is not None:
            self._produce_errors.append(f"{msg.topic()}: {err.str()}")

    def produce(self, t: str, key: str, schema: str, rec: dict) -> None:
        self.producer.produce(t, key=key, value=self.codec.encode(t, schema, rec),
                              on_delivery=self._on_delivery)
        self.producer.poll(0)

    def commit(self, flush_timeout_s: float = 30.0) -> bool:
        """Commits finished work, after its outputs are acknowledged (never before).

        With the broker away, outputs stay queued in the producer (it retries them until its
        delivery timeout) and nothing is committed: this returns False and the caller tries
        again later. An output the producer gave up on is work that must be done again, so
        the worker exits, and its successor re-reads everything uncommitted."""
        offsets = self.tracker.committable()
        if not offsets:
            return True
        remaining = self.producer.flush(flush_timeout_s)
        if self._produce_errors:
            raise TransientError(f"{len(self._produce_errors)} output(s) not delivered, first: "
                                 f"{self._produce_errors[0]}; exiting so the work is read again")
        if remaining:
            log.warning("outputs not acknowledged yet; not committing", remaining=remaining)
            return False
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                                 asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed; trying again later", error=exc.args[0].str())
            return False
        self.tracker.committed(offsets)
        return True

    def dead_letter_input(self, msg, dlq_topic: str, error_class: str, message: str) -> None:
        """An input record this worker cannot read: to its DLQ with the original key and
        bytes, so its offset can move on and a person can see and redrive it."""
        rec = dlq_record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                         error_class, message, self.stage)
        self.producer.produce(dlq_topic, key=msg.key(), value=self.codec.encode(dlq_topic, "DlqRecord", rec),
                              on_delivery=self._on_delivery)
        self.producer.poll(0)
        self.sensor_dead_lettered(error_class)

    def sensor_dead_lettered(self, error_class: str) -> None:
        self.stage_sensor.dead_lettered(self.stage, error_class)

    def flow_control(self, buffered: int, limit: int) -> None:
        """Stops reading ahead past `limit` buffered records; resumes below half of it."""
        assignment = self.consumer.assignment()
        if not self.paused and buffered >= limit and assignment:
            self.consumer.pause(assignment)
            self.paused = True
        elif self.paused and buffered < limit // 2:
            self.consumer.resume(assignment)
            self.paused = False

    def stop(self, *_args) -> None:
        self.running = False
