"""Reads fixed offset ranges of one topic, partition after partition, with no consumer group.

Used by replay: the ranges are decided when the request starts (ends = the last stable offsets
then), so a replay always ends even while producers keep writing, and `deadline` bounds it even
when a broker stops answering. Blocking; callers on an event loop run `next_batch` in a thread.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from connectors.kafka_config import consumer_config
from geoflux.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class RawRecord:
    partition: int
    offset: int
    timestamp_ms: int  # the record timestamp (CreateTime: when it was produced)
    key: bytes | None
    value: bytes | None


class RangeReader:
    """`ranges`: partition -> (first offset, end offset exclusive). Partitions are read in
    ascending order, each in offset order; read_committed, so aborted records never appear."""

    def __init__(self, kafka: KafkaSettings, topic: str, ranges: dict[int, tuple[int, int]],
                 deadline: float) -> None:
        self.topic, self.deadline = topic, deadline
        self._todo = [(p, lo, hi) for p, (lo, hi) in sorted(ranges.items()) if hi > lo]
        self._current: tuple[int, int, int] | None = None
        self.timed_out = False
        # assign() with a throwaway id: no group is joined and nothing is ever committed
        self._consumer = Consumer(consumer_config(kafka, f"replay-{uuid.uuid4().hex[:8]}", **{
            "enable.auto.offset.store": False, "enable.partition.eof": True}))

    @property
    def done(self) -> bool:
        return self.timed_out or (self._current is None and not self._todo)

    def _next_partition(self) -> bool:
        if not self._todo:
            self._current = None
            return False
        self._current = self._todo.pop(0)
        p, lo, _hi = self._current
        self._consumer.assign([TopicPartition(self.topic, p, lo)])
        return True

    def _finish_partition(self) -> None:
        self._consumer.unassign()
        self._current = None

    def next_batch(self, max_records: int = 500, poll_s: float = 0.2) -> list[RawRecord]:
        """Up to `max_records` of the current partition; [] once `done`."""
        while not self.done:
            if self._current is None and not self._next_partition():
                return []
            if time.monotonic() > self.deadline:
                self.timed_out = True
                return []
            p, _lo, hi = self._current
            out: list[RawRecord] = []
            for msg in self._consumer.consume(max_records, poll_s):
                err = msg.error()
                if err is not None:
                    # the end of what is readable (the last stable offset): a transaction's
                    # commit marker may sit at hi - 1, so no record with that offset ever comes
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._finish_partition()
                        break
                    continue
                if msg.offset() >= hi:  # written after the request started
                    self._finish_partition()
                    break
                out.append(RawRecord(p, msg.offset(), msg.timestamp()[1], msg.key(), msg.value()))
                if msg.offset() == hi - 1:
                    self._finish_partition()
                    break
            if out:
                return out
        return []

    def close(self) -> None:
        try:
            self._consumer.close()
        except RuntimeError:  # already closed
            pass
