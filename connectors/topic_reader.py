"""Reading a whole topic into memory and keeping up with it: geofences, rules, channels,
silences, statuses and DLQs are all read this way by whoever needs them.

`load()` reads every partition to its end (read_committed, so the last stable offset) before
returning; after that either `poll()` from the owner's loop or `follow()` in a thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Callable

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.kafka_config import consumer_config, log_end_config
from geoflux.errors import GeofluxError, ValidationError
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec

log = structlog.get_logger("geoflux.reader")


class TopicReader:
    """Calls `apply(key, record_or_None, msg)` for every record; `apply` returns True when the
    record changed something (those keys are what `poll` returns).

    A record that cannot be decoded, or that `apply` raises on, is logged, reported to
    `on_skip(topic, error_class)` and skipped: one bad record never stops a reader (the topics
    read this way are configuration and views; their writers validate, so a bad record is
    foreign or corrupt, and the rest of the topic is still good)."""

    def __init__(self, kafka: KafkaSettings, topic: str, schema: str, codec: AvroCodec,
                 apply: Callable[[str, dict | None, object], bool],
                 on_skip: Callable[[str, str], None] | None = None) -> None:
        self.kafka, self.topic, self.schema, self.codec, self.apply = kafka, topic, schema, codec, apply
        self.on_skip = on_skip or TopicReader.default_on_skip
        self.positions: dict[int, int] = {}  # partition -> next offset applied
        self.skipped = 0
        self._eof: set[int] = set()
        self._ends: dict[int, int] = {}  # partition -> end offset at its latest end-of-partition
        self._probe: Consumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.RLock()
        self._consumer = Consumer(consumer_config(kafka, f"reader-{uuid.uuid4().hex[:8]}",
                                                  **{"enable.partition.eof": True}))

    #: where a process reports skipped records when a reader is given no `on_skip` (the API
    #: sets it to its Prometheus counter)
    default_on_skip: Callable[[str, str], None] = staticmethod(lambda _topic, _cls: None)

    def load(self, timeout_s: float = 60.0) -> "TopicReader":
        """Reads every partition to its end; waits (within `timeout_s`) for a broker that is
        restarting rather than failing at once."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                md = self._consumer.list_topics(self.topic, timeout=self.kafka.request_timeout_s)
                break
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise GeofluxError(f"{self.topic}: no broker answered within {timeout_s:.0f}s "
                                       f"({exc.args[0].str()})") from None
                log.warning("waiting for the broker", topic=self.topic, error=exc.args[0].str())
                time.sleep(1.0)
        if self.topic not in md.topics or md.topics[self.topic].error is not None:
            raise GeofluxError(f"topic {self.topic} does not exist: run `geoflux topics apply`")
        parts = list(md.topics[self.topic].partitions)
        # Where each partition ends now, asked before reading: an empty partition is read, and
        # one whose last record arrives is read to its end, without waiting out a fetch that
        # reports the end (up to fetch.wait.max.ms each; an API reads a dozen topics at start).
        # Only a partition ending in a transaction marker, which no record carries, waits for it.
        while True:
            try:
                ends = {p: self._end_offsets(p) for p in parts}
                break
            except KafkaException as exc:  # a topic just created may have no leader yet
                if time.monotonic() > deadline:
                    raise GeofluxError(f"{self.topic}: its end offsets could not be read within "
                                       f"{timeout_s:.0f}s ({exc.args[0].str()})") from None
                time.sleep(0.2)
        for p, (low, high) in ends.items():
            if high <= low:
                self._eof.add(p)
                self._ends[p] = high
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        while not all(p in self._eof or self.positions.get(p, -1) >= ends[p][1] for p in parts):
            if time.monotonic() > deadline:
                raise GeofluxError(f"{self.topic} not read to its end within {timeout_s:.0f}s")
            self.poll(0.2)
        return self

    def _end_offsets(self, partition: int) -> tuple[int, int]:
        """(first, end) offsets this read_committed client can read in the partition now."""
        return self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                    timeout=self.kafka.request_timeout_s)

    def poll(self, timeout: float) -> set[str]:
        changed: set[str] = set()
        for msg in self._consumer.consume(500, timeout):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    self._eof.add(msg.partition())
                    self._ends[msg.partition()] = msg.offset()
                continue
            if self._take(msg):
                changed.add(msg.key().decode(errors="replace"))
            # after the record is applied: `applied_through_now` reads positions
            self.positions[msg.partition()] = msg.offset() + 1
        return changed

    def _take(self, msg) -> bool:
        if msg.key() is None:
            self._skip("no key", "validation", msg)
            return False
        key = msg.key().decode(errors="replace")
        try:
            rec = self.codec.decode(msg.value(), self.schema) if msg.value() else None
        except ValidationError as exc:
            self._skip(str(exc), "undecodable", msg)
            return False
        with self.lock:
            try:
                return bool(self.apply(key, rec, msg))
            except Exception as exc:  # one bad record must not stop the reader
                self._skip(f"{type(exc).__name__}: {exc}", "processing", msg)
                return False

    def applied_through_now(self, timeout_s: float) -> bool:
        """Waits until every record written to the topic before this call has been applied
        (another thread follows the topic): True then, False at the deadline or when the broker
        does not answer. An end-of-partition counts as well as a record, because the last
        offsets of a transactional topic are commit markers that no record carries."""
        deadline = time.monotonic() + timeout_s
        try:
            with self.lock:
                parts = sorted(self._eof | set(self.positions))
            if self._probe is None:
                # its own client: the follower's consumer blocks other calls while it polls. The
                # log's end: a transaction committed just before this call has no marker yet,
                # and its records are among those asked for
                self._probe = Consumer(log_end_config(self.kafka, f"reader-probe-{uuid.uuid4().hex[:8]}"))
            highs = {}
            for p in parts:  # the deadline is for the whole answer, not for each partition's
                left = max(0.1, deadline - time.monotonic())
                highs[p] = self._probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=left)[1]
        except KafkaException:
            return False
        while True:
            if all(max(self.positions.get(p, 0), self._ends.get(p, 0)) >= hi for p, hi in highs.items()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def _skip(self, error: str, error_class: str, msg) -> None:
        self.skipped += 1
        log.error("record skipped", topic=self.topic, partition=msg.partition(), offset=msg.offset(),
                  error_class=error_class, error=error[:300])
        self.on_skip(self.topic, error_class)

    def follow(self) -> "TopicReader":
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.topic}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll(0.2)

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._consumer.close()
        if self._probe is not None:
            self._probe.close()
