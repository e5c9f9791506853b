"""Consume -> transform -> produce in one Kafka transaction per batch.

The shell every stateful geoflux stage shares. A subclass supplies `process` (and optionally
`tick`, `restore`, side inputs); this class owns the consumer, the transactional producer,
partition assignment, changelog restore and recovery from an aborted transaction:

- one transaction carries the outputs, the changelog records of the state that changed and
  the consumed offsets, so after a crash state, output and position agree;
- state is kept per input partition and restored from a compacted changelog that is
  co-partitioned with the input (same key, same partition count);
- side inputs are compacted topics every instance reads whole and follows (geofences, rules,
  silences): loaded to their end before the first input record is processed.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.kafka_config import consumer_config, transactional_config
from connectors.topic_reader import TopicReader
from geoflux.errors import GeofluxError, ValidationError
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec

log = structlog.get_logger("geoflux.processor")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Batch:
    """What one transaction will carry besides the records already produced into it."""

    dirty: dict[str, tuple[int, Any]] = field(default_factory=dict)  # key -> (partition, state)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    produced: int = 0
    tally: dict[str, Any] = field(default_factory=dict)  # what a subclass reports on commit
    started: float = field(default_factory=time.monotonic)


class SideInput(TopicReader):
    """A compacted topic every instance reads whole: `apply(key, record_or_None)`."""

    def __init__(self, kafka: KafkaSettings, topic: str, schema: str, codec: AvroCodec,
                 apply: Callable[[str, dict | None], bool]) -> None:
        super().__init__(kafka, topic, schema, codec, lambda key, rec, _msg: apply(key, rec))


class ConfigSideInput(SideInput):
    """A ConfigRecord topic parsed into `target` (id -> object). Objects were validated on
    write; one that no longer parses (an old or foreign record) is logged and ignored, and
    `keep` can decline objects another stage is responsible for."""

    def __init__(self, kafka: KafkaSettings, topic: str, codec: AvroCodec, target: dict,
                 parse: Callable[[dict, str, dict], Any], keep: Callable[[Any], bool] = lambda _o: True) -> None:
        self.target, self.parse, self.keep = target, parse, keep
        super().__init__(kafka, topic, "ConfigRecord", codec, self._apply_config)

    def _apply_config(self, oid: str, rec: dict | None) -> bool:
        if rec is None or rec["deleted"]:
            return self.target.pop(oid, None) is not None
        try:
            obj = self.parse(json.loads(rec["body"]), oid, rec)
        except ValidationError as exc:
            log.error("invalid configuration ignored", topic=self.topic, id=oid, error=str(exc))
            return False
        if self.keep(obj):
            self.target[oid] = obj
        else:
            self.target.pop(oid, None)
        return True


class TransactionalProcessor:
    #: set by subclasses
    changelog_topic: str | None = None
    changelog_schema: str | None = None

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, *, group: str, instance_id: str,
                 inputs: list[str], max_batch: int = 2000, poll_timeout_s: float = 0.02,
                 tick_interval_s: float = 0.2) -> None:
        self.kafka, self.codec = kafka, codec
        self.group, self.instance_id, self.inputs = group, instance_id, inputs
        self.max_batch, self.poll_timeout_s, self.tick_interval_s = max_batch, poll_timeout_s, tick_interval_s
        self.states: dict[int, dict[str, Any]] = {}
        self.partition_of: dict[str, int] = {}
        self.side_inputs: list[SideInput] = []
        self.running = True
        self.transactions = self.aborted = 0
        self._last_tick = 0.0
        self.consumer = Consumer(consumer_config(kafka, group, **{
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 120_000, "fetch.wait.max.ms": 5}))
        self.producer = Producer(transactional_config(kafka, f"{group}-{instance_id}"))

    # -- hooks -------------------------------------------------------------------------------
    def state_from_record(self, rec: dict) -> Any:
        raise NotImplementedError

    def state_to_record(self, state: Any) -> dict:
        raise NotImplementedError

    def on_restored(self, partition: int, states: dict[str, Any]) -> None:
        """Called after a partition's state is restored (before its first record)."""

    def on_side_input(self, batch: Batch, changed: set[str]) -> None:
        """Called inside a transaction with the side-input keys that changed."""

    def process(self, msgs: list, batch: Batch) -> None:
        raise NotImplementedError

    def tick(self, batch: Batch) -> None:
        """Called inside a transaction every `tick_interval_s` (timers)."""

    def has_pending_work(self) -> bool:
        return False

    def wants_tick(self) -> bool:
        return False

    # -- helpers for subclasses -------------------------------------------------------------
    def produce(self, batch: Batch, topic: str, key: str | bytes | None, value: bytes | None) -> None:
        self.producer.produce(topic, key=key, value=value)
        batch.produced += 1

    def emit(self, batch: Batch, topic: str, key: str, schema: str, record: dict) -> None:
        self.produce(batch, topic, key, self.codec.encode(topic, schema, record))

    def mark_dirty(self, batch: Batch, key: str, state: Any) -> None:
        batch.dirty[key] = (self.partition_of[key], state)

    def state(self, key: str) -> Any | None:
        part = self.partition_of.get(key)
        return None if part is None else self.states.get(part, {}).get(key)

    def put_state(self, partition: int, key: str, state: Any) -> None:
        self.states.setdefault(partition, {})[key] = state
        self.partition_of[key] = partition

    def dead_letter(self, batch: Batch, dlq_topic: str, msg, error_class: str, message: str,
                    attempts: int = 1) -> None:
        now = now_ms()
        rec = {"dlq_id": f"{msg.topic()}:{msg.partition()}:{msg.offset()}",
               "original_topic": msg.topic(), "original_partition": msg.partition(),
               "original_offset": msg.offset(), "original_key": msg.key(),
               "original_value": msg.value(), "error_class": error_class,
               "error_message": message, "attempts": attempts, "first_failure_ms": now,
               "last_failure_ms": now, "redrive_topic": msg.topic()}
        self.produce(batch, dlq_topic, msg.key(), self.codec.encode(dlq_topic, "DlqRecord", rec))

    # -- assignment and restore ---------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        for p in sorted({tp.partition for tp in partitions}):
            restored = self._restore(p) if self.changelog_topic else {}
            for key, state in restored.items():
                self.put_state(p, key, state)
            self.states.setdefault(p, {})
            self.on_restored(p, restored)
        log.info("assigned", group=self.group, partitions=[tp.partition for tp in partitions])

    def _on_revoke(self, consumer, partitions) -> None:
        for p in {tp.partition for tp in partitions}:
            for key in self.states.pop(p, {}):
                self.partition_of.pop(key, None)
        log.info("revoked", group=self.group, partitions=[tp.partition for tp in partitions])

    def _restore(self, partition: int) -> dict[str, Any]:
        """This partition's committed changelog, read to its end (the last stable offset)."""
        restorer = Consumer(consumer_config(self.kafka, f"{self.group}-restore-{uuid.uuid4().hex[:8]}",
                                            **{"enable.partition.eof": True}))
        states: dict[str, Any] = {}
        try:
            restorer.assign([TopicPartition(self.changelog_topic, partition, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 120
            done = False
            while not done:
                if time.monotonic() > deadline:
                    raise GeofluxError(f"restoring {self.changelog_topic}[{partition}] took over 120 s")
                for msg in restorer.consume(1000, 0.5):
                    if msg.error():
                        done = done or msg.error().code() == KafkaError._PARTITION_EOF
                        continue
                    key = msg.key().decode()
                    if msg.value() is None:
                        states.pop(key, None)
                    else:
                        states[key] = self.state_from_record(
                            self.codec.decode(msg.value(), self.changelog_schema))
        finally:
            restorer.close()
        return states

    # -- the loop -----------------------------------------------------------------------------
    def run(self, max_seconds: float | None = None) -> None:
        self.producer.init_transactions(self.kafka.request_timeout_s * 4)
        for side in self.side_inputs:
            side.load()
        self.consumer.subscribe(self.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke)
        stop_at = time.monotonic() + max_seconds if max_seconds else None
        try:
            while self.running and (stop_at is None or time.monotonic() < stop_at):
                self.step()
        finally:
            self.close()

    def stop(self, *_args) -> None:
        self.running = False

    def close(self) -> None:
        for closer in [self.consumer.close, *(s.close for s in self.side_inputs)]:
            try:
                closer()
            except (KafkaException, RuntimeError):
                pass
        self.producer.flush(10)

    def step(self) -> None:
        msgs = [m for m in self.consumer.consume(self.max_batch, self.poll_timeout_s)]
        changed: set[str] = set()
        for side in self.side_inputs:
            changed |= side.poll(0)
        tick = time.monotonic() - self._last_tick >= self.tick_interval_s and self.wants_tick()
        if not (msgs or changed or tick or self.has_pending_work()):
            return
        batch = Batch()
        self.producer.begin_transaction()
        try:
            if changed or self.has_pending_work():
                self.on_side_input(batch, changed)
            if msgs:
                for m in msgs:
                    if not m.error():
                        batch.offsets[(m.topic(), m.partition())] = m.offset() + 1
                self.process([m for m in msgs if not m.error()], batch)
            if tick:
                self._last_tick = time.monotonic()
                self.tick(batch)
            for key, (partition, state) in batch.dirty.items():
                value = None if state is None else self.codec.encode(
                    self.changelog_topic, self.changelog_schema, self.state_to_record(state))
                self.producer.produce(self.changelog_topic, key=key, value=value,
                                      partition=partition)
            if batch.offsets:
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()],
                    self.consumer.consumer_group_metadata(), self.kafka.request_timeout_s)
            self.producer.commit_transaction(self.kafka.request_timeout_s * 2)
            self.transactions += 1
        except KafkaException as exc:
            self._recover(exc)
            return
        self.on_committed(batch)

    def on_committed(self, batch: Batch) -> None:
        """After a batch's transaction committed (metrics hooks); does nothing by default."""

    def _recover(self, exc: KafkaException) -> None:
        """An aborted batch: rewind input and in-memory state to what the changelog holds."""
        err = exc.args[0]
        if not err.txn_requires_abort():
            raise exc  # fatal (fenced by a newer instance, or misconfigured): exit and restart
        log.warning("transaction aborted, rewinding", group=self.group, error=err.str())
        self.producer.abort_transaction(self.kafka.request_timeout_s * 2)
        self.aborted += 1
        assigned = self.consumer.assignment()
        committed = self.consumer.committed(assigned, timeout=self.kafka.request_timeout_s)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition,
                                              tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self._on_revoke(self.consumer, assigned)
        self._on_assign(self.consumer, assigned)
