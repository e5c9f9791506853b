"""The audit sink: geofence events, CEP matches, alert and job status changes -> PostgreSQL.

Guarantee: at-least-once into an idempotent table. A chunk is consumed (read_committed, auto
commit off), written in one database transaction, and only then are its offsets committed to
Kafka. A SIGKILL at any point re-reads what had not been committed (the chunk under way and
any whose commit had not landed); their rows map to the same `(id, ts)` keys
(connectors/audit_rows.py) and ON CONFLICT drops them. No Kafka transaction can cover a
PostgreSQL row, so this is the strongest guarantee the pair allows, and the primary key turns
it into exactly-once rows.

PostgreSQL down: the chunk is held in memory, the assigned partitions are paused (the
consumer keeps polling, so it stays in its group and reads nothing further), and the write is
retried on `AuditSettings.backoff_s` until it succeeds; nothing is skipped or committed early.
A record that cannot be decoded or mapped goes to `audit.dlq` with its error class before its
offset is committed, and so does a single row PostgreSQL refuses as bad data.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

import structlog
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from connectors.audit_rows import SOURCES, AuditRow, backoff, to_row
from connectors.audit_store import AuditStore
from connectors.kafka_config import consumer_config
from connectors.kafka_producer import ReliableProducer
from geoflux.errors import GeofluxError, PermanentError, TransientError
from geoflux.settings import AuditSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from schemas.dlq import dlq_record
from streams.runtime.group_health import GroupHealth
from streams.runtime.restart import group_stats_config, watch_group

log = structlog.get_logger("geoflux.audit")


@dataclass
class Chunk:
    """What the sink read since its last commit: rows written in one database transaction,
    rejects for the DLQ, and the offsets committed once both are done."""

    rows: list[tuple[AuditRow, Message]] = field(default_factory=list)
    dead: list[tuple[Message, str, str]] = field(default_factory=list)  # msg, class, message
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to read
    read: int = 0


class AuditSinkStage:
    def __init__(self, kafka: KafkaSettings, audit: AuditSettings, dsn: str, codec: AvroCodec,
                 store: AuditStore | None = None) -> None:
        self.kafka, self.audit, self.codec = kafka, audit, codec
        self.store = store or AuditStore(dsn, audit.table, audit.connect_timeout_s)
        self.sources = {topic(logical, kafka): spec for logical, spec in SOURCES.items()}
        self.dlq_topic = topic("audit.dlq", kafka)
        self.group = kafka.topic_prefix + audit.group_id
        self.health = GroupHealth(kafka.group_stall_s, since=time.monotonic())
        self.consumer = Consumer(consumer_config(kafka, self.group, **{
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "on_commit": self._on_commit,
            **group_stats_config(self.health)}))
        self.producer = ReliableProducer(kafka)
        self.running = True
        self.paused = False
        self.written = 0  # rows new to the table since start (repeats excluded)
        self._chunk: Chunk | None = None

    def stop(self, *_: object) -> None:
        self.running = False

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(list(self.sources), on_revoke=self._on_revoke)
        log.info("audit sink started", group=self.group, topics=sorted(self.sources),
                 table=self.audit.table)
        watching = watch_group(self.health, log, "audit")
        try:
            while self.running:
                self.step()
        finally:
            try:
                self.consumer.close()
                self.store.close()
                self.producer.flush_or_raise(10)
            finally:
                watching.set()

    def step(self) -> None:
        msgs = self.consumer.consume(self.audit.batch_size, self.audit.poll_timeout_s)
        if not msgs:
            return
        self._chunk = Chunk()
        self._add(self._chunk, msgs)
        if self._flush(self._chunk):
            self._commit(self._chunk)
        self._chunk = None

    def _on_revoke(self, _consumer, partitions) -> None:
        # the new owner re-reads what we did not commit; committing it here could skip it
        if self._chunk is not None:
            for tp in partitions:
                self._chunk.offsets.pop((tp.topic, tp.partition), None)

    # -- records -> rows --------------------------------------------------------------------
    def _add(self, chunk: Chunk, msgs: list[Message]) -> None:
        for m in msgs:
            if m.error():
                log.warning("consumer error", error=m.error().str())
                continue
            chunk.read += 1
            tp = (m.topic(), m.partition())
            chunk.offsets[tp] = max(chunk.offsets.get(tp, 0), m.offset() + 1)
            if m.value() is None:
                continue  # a compaction tombstone: a deletion of a key, not an event to audit
            kind, schema = self.sources[m.topic()]
            try:
                rec = self._decode(m, schema, chunk)
            except PermanentError as exc:  # not our wire format, an unknown schema id, corrupt bytes
                chunk.dead.append((m, "undecodable", str(exc)))
                continue
            try:
                chunk.rows.append((to_row(kind, rec, m.topic(), m.partition(), m.offset()), m))
            except PermanentError as exc:
                chunk.dead.append((m, exc.error_class, str(exc)))

    def _decode(self, m: Message, schema: str, chunk: Chunk) -> dict:
        attempt = 0
        while True:  # a schema registry that is down is waited for, not dead-lettered
            try:
                return self.codec.decode(m.value(), schema)
            except TransientError as exc:
                attempt += 1
                log.warning("schema registry unavailable; retrying", error=str(exc), attempt=attempt)
                self._hold(backoff(self.audit.backoff_s, attempt), chunk)
                if not self.running:
                    raise

    # -- writes, with the position held while PostgreSQL is away ----------------------------
    def _flush(self, chunk: Chunk) -> bool:
        """True once the chunk is in PostgreSQL (and its rejects in the DLQ)."""
        attempt, started = 0, time.monotonic()
        while self.running:
            try:
                self._dead_letter(chunk)
                self.written += self._write(chunk)
                break
            except TransientError as exc:
                attempt += 1
                wait = backoff(self.audit.backoff_s, attempt)
                log.warning("audit write failed; holding position and retrying",
                            error=str(exc), attempt=attempt, retry_in_s=wait,
                            rows=len(chunk.rows))
                self._hold(wait, chunk)
        else:
            return False  # stopping: the chunk stays uncommitted and is re-read on restart
        if self.paused:
            self.consumer.resume(self.consumer.assignment())
            self.paused = False
        if attempt:
            log.info("audit writes resumed", after_s=round(time.monotonic() - started, 1),
                     attempts=attempt)
        return True

    def _write(self, chunk: Chunk) -> int:
        rows = [r for r, _ in chunk.rows]
        try:
            return self.store.write(rows)
        except PermanentError as exc:
            if len(rows) == 1:
                raise
            log.warning("chunk refused as bad data; isolating the row(s)", error=str(exc))
        new, keep = 0, []
        for row, m in chunk.rows:  # one at a time: the good rows land, the bad ones are named
            try:
                new += self.store.write([row])
                keep.append((row, m))
            except PermanentError as exc:
                chunk.dead.append((m, exc.error_class, str(exc)))
        chunk.rows = keep
        self._dead_letter(chunk)
        return new

    def _dead_letter(self, chunk: Chunk) -> None:
        if not chunk.dead:
            return
        out = []
        for m, error_class, message in chunk.dead:
            rec = dlq_record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), error_class,
                             message, "audit")
            out.append((self.dlq_topic, self.codec.encode(self.dlq_topic, "DlqRecord", rec), m.key()))
        self.producer.deliver(out)  # raises TransientError: retried with the chunk
        log.warning("records dead-lettered", count=len(out), topic=self.dlq_topic,
                    first_error=chunk.dead[0][2][:200])
        chunk.dead = []

    def _hold(self, seconds: float, chunk: Chunk) -> None:
        """Waits without reading on: partitions paused, the consumer polled (so the group keeps
        us). A rebalance can hand us new, unpaused partitions: what they deliver joins the chunk
        (still uncommitted) and they are paused too."""
        deadline = time.monotonic() + seconds
        while self.running and time.monotonic() < deadline:
            assignment = self.consumer.assignment()
            if assignment:
                self.consumer.pause(assignment)
                self.paused = True
            extra = self.consumer.consume(self.audit.batch_size,
                                          max(0.0, min(0.2, deadline - time.monotonic())))
            if extra:  # read, so part of this chunk: dropping it would skip it at commit
                self._add(chunk, extra)

    def _commit(self, chunk: Chunk) -> None:
        """Asynchronous, so the loop keeps polling: a synchronous commit waits for the group
        coordinator with no deadline of its own, and librdkafka can keep one queued for good
        once it has lost the coordinator's address; the sink would then stop reading and drop
        out of its group. A commit that fails or never arrives is covered by the next chunk's
        (offsets only grow) or, at worst, costs a re-read that the table's key absorbs."""
        if not chunk.offsets:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in chunk.offsets.items()],
                                 asynchronous=True)
        except KafkaException as exc:
            log.warning("offset commit not sent; the next chunk's covers it", error=str(exc))

    def _on_commit(self, err, _partitions) -> None:
        # e.g. a rebalance raced us: the rows are in; re-reading them adds nothing
        if err is not None:
            log.warning("offset commit failed; the next chunk's covers it", error=err.str())


def run_audit(kafka: KafkaSettings, audit: AuditSettings, dsn: str, codec: AvroCodec) -> None:
    sink = AuditSinkStage(kafka, audit, dsn, codec)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    try:
        sink.store.ensure_schema()
    except TransientError as exc:  # PostgreSQL not up yet: the first write retries it
        log.warning("PostgreSQL unavailable at start; will retry", error=str(exc))
    except GeofluxError:
        raise
    sink.run()
