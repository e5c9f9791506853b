"""Bringing partition stores up to their changelog's end without blocking the consumer group.

The stage pauses a newly assigned input partition and registers it here; each turn of its loop
calls `step()`, which reads a bounded slice of the changelog into the store and returns the
partitions that are done (the stage then resumes them). Between turns the stage keeps polling,
so it stays in its group however long a restore takes. Progress (records and seconds left) is
logged and reported to the sensor.

Where a restore starts: at the store's checkpoint when the store is persistent and the
checkpoint is usable; from the beginning otherwise (no checkpoint, an unreadable one, one of a
store laid out in an older format, one past the changelog's end — the topic was recreated — or
one older than the changelog's `delete.retention.ms`, after which compaction may have dropped
tombstones the store never saw).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.state.table import FORMAT, META_PREFIX, PartitionTable

log = structlog.get_logger("geoflux.restore")

DEFAULT_DELETE_RETENTION_MS = 86_400_000  # Kafka's default for compacted topics


@dataclass
class Restoring:
    table: PartitionTable
    start: int
    end: int  # the changelog's end when the restore began
    position: int
    started: float = field(default_factory=time.monotonic)
    restored: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.end - self.position)


def start_offset(table: PartitionTable, persistent: bool, low: int, high: int, now_ms: int,
                 delete_retention_ms: int = DEFAULT_DELETE_RETENTION_MS) -> int | None:
    """Where to restore from: the checkpoint, or None for "wipe and restore in full". Pure."""
    if not persistent:
        return None
    ckpt = table.checkpoint()
    if ckpt is None or ckpt.get("format") != FORMAT:
        return None
    offset = ckpt["offset"]
    if offset > high or offset < low:
        return None  # another incarnation of the topic, or records deleted under the store
    if now_ms - int(ckpt.get("written_ms", 0)) > delete_retention_ms:
        return None  # tombstones written since may already be compacted away
    return offset


class Restorer:
    def __init__(self, consumer: Consumer, topic: str, stage: str,
                 index_keys: Callable[[str, bytes], Iterable[bytes] | None],
                 batch: int = 10_000, progress: Callable[[int, int, float], None] | None = None) -> None:
        self.consumer, self.topic, self.stage = consumer, topic, stage
        self.index_keys, self.batch = index_keys, batch
        self.progress = progress or (lambda _p, _left, _secs: None)
        self.active: dict[int, Restoring] = {}
        self._unassigned: dict[int, int] = {}  # begun, not yet assigned to the consumer: -> start
        self._last_log = 0.0
        self._progress_at = time.monotonic()

    def begin(self, partition: int, table: PartitionTable, start: int | None, low: int, high: int) -> None:
        if start is None:
            table.wipe()
            start = low
        job = Restoring(table, start, high, start)
        self.active[partition] = job
        self._progress_at = time.monotonic()
        # assigned at the next step, together with the others begun meanwhile: once a partition
        # is assigned, the consumer keeps a fetch parked at the broker (fetch.wait.max.ms) and
        # the broker answers one connection's requests in order, so every watermark query the
        # stage makes for the next partition would wait behind it (0.5 s per partition measured)
        self._unassigned[partition] = start
        log.info("restoring", stage=self.stage, partition=partition, start=start, end=high,
                 records=job.remaining, mode="tail" if start > low else "full")

    def cancel(self, partitions: Iterable[int]) -> None:
        """Revoked mid-restore: stop reading; the store keeps what was restored (and a
        checkpoint saying so), so the next owner on this host continues from there."""
        gone = [p for p in partitions if p in self.active]
        if gone:
            assigned = [TopicPartition(self.topic, p) for p in gone if self._unassigned.pop(p, None) is None]
            if assigned:
                self.consumer.incremental_unassign(assigned)
            for p in gone:
                log.info("restore cancelled", stage=self.stage, partition=p,
                         restored=self.active[p].restored, remaining=self.active[p].remaining)
                del self.active[p]

    def step(self, budget_s: float = 0.1) -> list[int]:
        """Restores for up to `budget_s`; returns the partitions that reached their end."""
        done = [p for p, job in self.active.items() if job.position >= job.end]
        fetch = [TopicPartition(self.topic, p, start if start > 0 else OFFSET_BEGINNING)
                 for p, start in self._unassigned.items() if p not in done]
        self._unassigned = {}
        if fetch:
            self.consumer.incremental_assign(fetch)
        deadline = time.monotonic() + budget_s
        while self.active and len(done) < len(self.active) and time.monotonic() < deadline:
            msgs = self.consumer.consume(self.batch, 0.05)
            if not msgs:
                continue
            latest: dict[int, dict[str, bytes | None]] = {}  # only a key's last version counts
            read: dict[int, int] = {}
            positions: dict[int, int] = {}
            for msg in msgs:
                p = msg.partition()
                if p not in self.active:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        positions[p] = max(positions.get(p, 0), msg.offset())
                    continue
                if msg.key() is not None:
                    latest.setdefault(p, {})[msg.key().decode()] = msg.value()
                    read[p] = read.get(p, 0) + 1
                positions[p] = max(positions.get(p, 0), msg.offset() + 1)
            if positions:
                self._progress_at = time.monotonic()
            for p, pos in positions.items():
                job = self.active[p]
                # index keys (a decode each) only for the version that stays
                job.table.apply(((key, value, None if value is None or key.startswith(META_PREFIX)
                                  else self.index_keys(key, value))
                                 for key, value in latest.get(p, {}).items()), pos)
                job.restored += read.get(p, 0)
                job.position = max(job.position, pos)
            done = [p for p, job in self.active.items() if job.position >= job.end]
        self._report()
        for p in done:
            job = self.active.pop(p)
            if job.start < job.end:  # nothing to read was never assigned
                self.consumer.incremental_unassign([TopicPartition(self.topic, p)])
            log.info("restored", stage=self.stage, partition=p, records=job.restored,
                     seconds=round(time.monotonic() - job.started, 2))
            self.progress(p, 0, 0.0)
        return done

    def stalled_s(self) -> float:
        """Seconds since a restore last moved (0 when nothing is being restored)."""
        return time.monotonic() - self._progress_at if self.active else 0.0

    def _report(self) -> None:
        now = time.monotonic()
        for p, job in self.active.items():
            elapsed = max(now - job.started, 1e-3)
            rate = job.restored / elapsed if job.restored else 0.0
            secs = job.remaining / rate if rate else float("nan")
            self.progress(p, job.remaining, secs)
            if now - self._last_log > 2:
                log.info("restore progress", stage=self.stage, partition=p, restored=job.restored,
                         remaining_records=job.remaining,
                         remaining_s=None if rate == 0 else round(secs, 1))
        if now - self._last_log > 2:
            self._last_log = now
