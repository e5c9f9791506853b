"""Consume -> transform -> produce in one Kafka transaction per batch.

The shell every stateful geoflux stage shares. A subclass supplies `process` (and optionally
`tick`, side inputs, hooks); this class owns the rest:

- **One transaction** carries the outputs, the changelog records of the state that changed and
  the consumed offsets, so after a crash state, output and position agree.
- **Every input record is decoded here**, against the schema its topic declares. One that does
  not decode goes to the stage's DLQ (class `undecodable`) with its original key and bytes, in
  the same transaction that moves the offset past it. A record the stage's own logic raises on
  is isolated: the batch is aborted and replayed one record per transaction, and the record
  that still fails goes to the DLQ (class `processing`). A poison record never stops a stage.
- **State lives in local stores**, one per changelog partition (`streams.state`), written only
  after the transaction that carried the same changelog records committed, together with the
  changelog offset they reflect. RAM holds a bounded cache of decoded states.
- **Restore does not block the group.** A newly assigned partition is paused and its store
  brought up to the changelog's end a slice per loop turn (from its checkpoint when it has a
  usable one), while the consumer keeps polling; then it is resumed. The end is the log's, so
  a transaction still open there is waited out rather than restored past.
- **Broker faults are recoverable.** A commit that times out is retried; a transaction that
  must be aborted is aborted; a fenced or fatally failed producer is replaced (init_transactions
  fences the old epoch). Each time, cached state and consumer positions are rewound to what is
  committed, so nothing is lost or duplicated, and the loop goes on once the broker answers.
- **Side inputs** are compacted topics every instance reads whole and follows (geofences,
  rules, silences): loaded to their end before the first input record is processed; a bad
  record there is logged and skipped.
- **A stage stuck out of its group ends its process** (`serve`, the entry of a stage's own
  process): a consumer that has not been a steady group member for `group_stall_s`, or whose
  statistics stopped (the loop is stuck in a call), exits with 75 for its supervisor, as the
  at-least-once workers do (`streams.runtime.group_health`). `run` alone, as tests host a
  stage inside their own process, arms no exit.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.kafka_config import consumer_config, log_end_config, transactional_config
from connectors.topic_reader import TopicReader
from geoflux.errors import ConfigurationError, GeofluxError, ValidationError
from geoflux.settings import KafkaSettings, StreamSettings
from schemas.codec import AvroCodec
from schemas.dlq import dlq_record
from streams.runtime.group_health import GroupHealth
from streams.runtime.heap import freeze_long_lived
from streams.runtime.restart import exit_for_supervisor, group_stats_config, watch_group
from streams.runtime.sensor import NullStageSensor, StageSensor
from streams.state.restore import Restorer, start_offset
from streams.state.store import KeyValueStore, open_configured_store, resolve_kind
from streams.state.table import META_PREFIX, PartitionTable, StateCache

log = structlog.get_logger("geoflux.processor")

FENCED_LIMIT = 5  # producer replacements within a minute: another process has our --instance
STARTS_TIMEOUT_S = 2.0  # asking a partition's committed offset for `unread`, and again after a failure
WATCHDOG_GRACE_S = 10.0  # past a call's own timeout, a blocked transactional call is hung
RESTORE_STALL_S = 60.0  # a restore reading nothing for this long starts again with a new consumer
REWIND_TRIES = 2  # committed-offset lookups timing out in a row before the consumer is replaced


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Record:
    """An input record, decoded: `rec` is the value as the topic's schema reads it."""

    msg: Any
    rec: dict

    def topic(self) -> str:
        return self.msg.topic()

    def partition(self) -> int:
        return self.msg.partition()

    def offset(self) -> int:
        return self.msg.offset()

    def key(self) -> bytes | None:
        return self.msg.key()

    def raw(self) -> bytes | None:
        return self.msg.value()


@dataclass
class Txn:
    """What one transaction will carry besides the records already produced into it."""

    dirty: dict[str, tuple[int, Any]] = field(default_factory=dict)  # key -> (partition, state)
    meta: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (partition, name) -> value
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    produced: int = 0
    tally: dict[str, Any] = field(default_factory=dict)  # what a subclass reports on commit
    started: float = field(default_factory=time.monotonic)


class SideInput(TopicReader):
    """A compacted topic every instance reads whole: `apply(key, record_or_None)`."""

    def __init__(self, kafka: KafkaSettings, topic: str, schema: str, codec: AvroCodec,
                 apply: Callable[[str, dict | None], bool],
                 on_skip: Callable[[str, str], None] | None = None) -> None:
        super().__init__(kafka, topic, schema, codec, lambda key, rec, _msg: apply(key, rec), on_skip)


class ConfigSideInput(SideInput):
    """A ConfigRecord topic parsed into `target` (topic key -> object). Objects were validated
    on write; one that no longer parses (an old or foreign record) is logged and ignored, and
    `keep` can decline objects another stage is responsible for."""

    def __init__(self, kafka: KafkaSettings, topic: str, codec: AvroCodec, target: dict,
                 parse: Callable[[dict, str, dict], Any], keep: Callable[[Any], bool] = lambda _o: True) -> None:
        self.target, self.parse, self.keep = target, parse, keep
        super().__init__(kafka, topic, "ConfigRecord", codec, self._apply_config)

    def _apply_config(self, key: str, rec: dict | None) -> bool:
        if rec is None or rec["deleted"]:
            return self.target.pop(key, None) is not None
        try:
            obj = self.parse(json.loads(rec["body"]), rec["id"], rec)
        except (ValidationError, ValueError) as exc:
            log.error("invalid configuration ignored", topic=self.topic, key=key, error=str(exc))
            return False
        if self.keep(obj):
            self.target[key] = obj
        else:
            self.target.pop(key, None)
        return True


class TransactionalProcessor:
    #: set by subclasses
    changelog_topic: str | None = None
    changelog_schema: str | None = None
    stage: str = "stage"
    # True: each batch waits `poll_timeout_s` to fill (fewer, larger transactions, for stages
    # whose latency budget is seconds). False: a batch is what the consumer has queued, and
    # only a loop with nothing queued waits, until its first record arrives.
    waits_to_fill: bool = True

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, *, group: str, instance_id: str,
                 inputs: dict[str, str], dlq_topic: str | None = None, max_batch: int = 2000,
                 poll_timeout_s: float = 0.02, tick_interval_s: float = 0.2,
                 state: StreamSettings | None = None, sensor: StageSensor | None = None) -> None:
        self.kafka, self.codec = kafka, codec
        self.group, self.instance_id = group, instance_id
        self.input_schemas = dict(inputs)  # topic -> Avro schema of its values
        self.inputs = list(self.input_schemas)
        self.dlq_topic = dlq_topic
        self.tombstones_ok: set[str] = set()  # compacted inputs, where a tombstone is a deletion
        self.max_batch, self.poll_timeout_s, self.tick_interval_s = max_batch, poll_timeout_s, tick_interval_s
        self.state_settings = state or StreamSettings()
        self.stage_sensor = sensor or NullStageSensor()
        self.side_inputs: list[SideInput] = []
        self.running = True
        self.transactions = self.aborted = 0
        self._last_tick = self._last_tick_check = 0.0
        self.cache = StateCache(self.state_settings.cache_entries)
        self.tables: dict[int, PartitionTable] = {}
        self._stores: dict[int, KeyValueStore] = {}
        self.ready: set[int] = set()  # assigned, restored, resumed
        self._pending: set[int] = set()  # assigned, restore not begun yet
        self._touched: dict[str, int] = {}  # key -> partition, this transaction
        self._open: Txn | None = None
        self._pending_changed: set[str] = set()
        self._isolate_until: dict[tuple[str, int], int] = {}
        self._poison: dict[tuple[str, int, int], str] = {}  # records that raised on their own
        self._fenced_at: list[float] = []
        self._restorer: Restorer | None = None
        self._log_ends: Consumer | None = None  # asks where a changelog partition's log ends
        self._restore_retry_at = 0.0
        self._calls = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="txn-call")
        self._starts: dict[tuple[str, int], int] = {}  # where reading began, until a record is read
        self._starts_retry_at: dict[tuple[str, int], float] = {}
        self._fetched: set[tuple[str, int]] = set()  # partitions of records read, not yet processed
        self.health = GroupHealth(kafka.group_stall_s, since=time.monotonic())
        self.consumer = self._new_consumer()
        self.producer = self._new_producer_instance()

    def _new_consumer(self) -> Consumer:
        return Consumer(consumer_config(self.kafka, self.group, **{
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 120_000, "fetch.wait.max.ms": 5, **group_stats_config(self.health)}))

    def _new_producer_instance(self) -> Producer:
        return Producer(transactional_config(self.kafka, f"{self.group}-{self.instance_id}"))

    # -- hooks -------------------------------------------------------------------------------
    def state_from_record(self, rec: dict) -> Any:
        raise NotImplementedError

    def decode_state(self, key: str, partition: int, raw: bytes) -> Any:
        """A state as its partition's store holds it. A stage whose states span more than their
        own changelog record reads the rest from `self.table(partition)` here."""
        return self.state_from_record(self.codec.decode(raw, self.changelog_schema))

    def state_to_record(self, state: Any) -> dict:
        raise NotImplementedError

    def index_keys(self, key: str, state: Any) -> Iterable[bytes]:
        """Secondary index entries of a state (timers by due time, members of a fence...),
        kept in the partition's store and readable with `table(p).index(prefix)`."""
        return ()

    def on_restored(self, partition: int) -> None:
        """A partition's state is complete (restored); called before its first record."""

    def on_revoked(self, partitions: set[int]) -> None:
        """Partitions taken away; their state is no longer this instance's."""

    def on_rewind(self) -> None:
        """A transaction was given up: cached state and positions are back at the last commit.
        Stages drop whatever they derived from the lost work (held records, timers)."""

    def on_side_input(self, txn: Txn, changed: set[str]) -> None:
        """Called inside a transaction with the side-input keys that changed."""

    def process(self, records: list[Record], txn: Txn) -> None:
        raise NotImplementedError

    def tick(self, txn: Txn) -> None:
        """Called inside a transaction every `tick_interval_s` (timers)."""

    def has_pending_work(self) -> bool:
        return False

    def wants_tick(self) -> bool:
        return False

    def on_committed(self, txn: Txn) -> None:
        """After a batch's transaction committed (metrics hooks); does nothing by default."""

    # -- helpers for subclasses -------------------------------------------------------------
    def produce(self, txn: Txn, topic: str, key: str | bytes | None, value: bytes | None,
                partition: int | None = None, on_delivery=None) -> None:
        kwargs = {} if partition is None else {"partition": partition}
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, **kwargs)
                break
            except BufferError:  # local queue full: let librdkafka send, then go on
                self.producer.poll(0.05)
        txn.produced += 1

    def emit(self, txn: Txn, topic: str, key: str, schema: str, record: dict) -> None:
        self.produce(txn, topic, key, self.codec.encode(topic, schema, record))

    def table(self, partition: int) -> PartitionTable:
        return self.tables[partition]

    def state(self, key: str, partition: int | None = None) -> Any | None:
        """The state under `key`: this transaction's, the cache's, or the store's. `partition`
        is needed only for a key this transaction has not touched yet."""
        if self._open is not None and key in self._open.dirty:
            part, st = self._open.dirty[key]
            self._touched[key] = part
            return st
        hit = self.cache.get(key)
        if hit is not None:
            self._touched[key] = hit[0]
            return hit[1]
        part = partition if partition is not None else self._touched.get(key)
        if part is None or part not in self.tables:
            return None
        raw = self.tables[part].raw(key)
        if raw is None:
            return None
        st = self.decode_state(key, part, raw)
        self.cache.put(key, part, st)
        self._touched[key] = part
        return st

    def put_state(self, partition: int, key: str, state: Any) -> None:
        self.cache.put(key, partition, state)
        self._touched[key] = partition

    def mark_dirty(self, txn: Txn, key: str, state: Any, partition: int | None = None) -> None:
        part = partition if partition is not None else self._touched.get(key)
        if part is None:
            hit = self.cache.get(key)
            part = hit[0] if hit else None
        if part is None:
            raise GeofluxError(f"{self.stage}: state {key!r} changed without a known partition")
        txn.dirty[key] = (part, state)
        self._touched[key] = part

    def delete_state(self, txn: Txn, key: str, partition: int) -> None:
        """A tombstone in the changelog; the key is gone once the transaction commits."""
        self.cache.pop(key)
        txn.dirty[key] = (partition, None)
        self._touched[key] = partition

    def put_meta(self, txn: Txn, partition: int, name: str, value: bytes | None) -> None:
        """Stage metadata that travels on the changelog with the state it describes (None: a
        tombstone, the name is gone once the transaction commits)."""
        txn.meta[(partition, name)] = value

    def states(self, partition: int) -> Iterator[tuple[str, Any]]:
        """Every state of a partition, decoded (a scan: for rare, whole-partition work)."""
        for key, raw in self.tables[partition].raw_items():
            if self._open is not None and key in self._open.dirty:
                st = self._open.dirty[key][1]
            else:
                hit = self.cache.get(key)
                st = hit[1] if hit else self.decode_state(key, partition, raw)
            if st is not None:
                yield key, st

    def dead_letter(self, txn: Txn, dlq_topic: str | None, msg, error_class: str, message: str,
                    attempts: int = 1) -> None:
        msg = msg.msg if isinstance(msg, Record) else msg
        topic_ = dlq_topic or self.dlq_topic
        rec = dlq_record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                         error_class, message, self.stage, attempts=attempts)
        self.produce(txn, topic_, msg.key(), self.codec.encode(topic_, "DlqRecord", rec))
        txn.tally.setdefault("_dlq", []).append(error_class)

    # -- assignment and restore ---------------------------------------------------------------
    def _store_path(self, partition: int) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in self.changelog_topic)
        return Path(self.state_settings.data_dir) / safe / self.instance_id / str(partition)

    def _table_for(self, partition: int) -> PartitionTable:
        if partition not in self.tables:
            store = open_configured_store(self.state_settings, self._store_path(partition))
            self._stores[partition] = store
            self.tables[partition] = PartitionTable(store, partition)
        return self.tables[partition]

    def unread(self, assignment: list[TopicPartition]) -> set[tuple[str, int]]:
        """(topic, partition) of the `assignment` (the consumer's) with records not read yet
        (more than a transaction marker). Until a record is read from a partition its position
        is unknown; it then starts at its committed offset, or at the log's start if retention
        deleted past that (asked once). A partition no fetch has reported the end of yet counts
        as unread: it may hold the oldest records, and a fetch soon tells.
        Records already read but not processed yet (a tick runs before the batch that read them)
        count as unread too: their position is past them. Counting either as read once let the
        CEP re-key write past a partition's records, which then came too late."""
        out = set(self._fetched)
        for tp in self.consumer.position(assignment) if assignment else ():
            _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
            start = tp.offset if tp.offset >= 0 else self._start(tp.topic, tp.partition)
            if hi < 0 or start is None or hi > start + 1:
                out.add((tp.topic, tp.partition))
        return out

    def _start(self, t: str, partition: int) -> int | None:
        key = (t, partition)
        if key in self._starts:
            return self._starts[key]
        if time.monotonic() < self._starts_retry_at.get(key, 0.0):
            return None
        try:
            tp = TopicPartition(t, partition)
            committed = self.consumer.committed([tp], timeout=STARTS_TIMEOUT_S)[0].offset
            # asked, not cached: no fetch may have told it yet (one at a committed offset that
            # retention has deleted past fails, and reading restarts at the log's start)
            lo = self.consumer.get_watermark_offsets(tp, timeout=STARTS_TIMEOUT_S, cached=False)[0]
            offset = max(committed, lo)
        except KafkaException:
            offset = -1
        if offset < 0:  # the broker away: ask again soon, the partition unread meanwhile
            self._starts_retry_at[key] = time.monotonic() + STARTS_TIMEOUT_S
            return None
        self._starts[key] = offset
        return offset

    def _on_assign(self, consumer, partitions) -> None:
        for tp in partitions:
            self._starts.pop((tp.topic, tp.partition), None)
        self.health.joined(time.monotonic())
        consumer.assign(partitions)
        consumer.pause(partitions)  # resumed once each partition's state is complete
        self._pending |= {tp.partition for tp in partitions}
        log.info("assigned", group=self.group, partitions=sorted(tp.partition for tp in partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        self._forget({tp.partition for tp in partitions})

    def _forget(self, gone: set[int]) -> None:
        if self._restorer is not None:
            self._restorer.cancel(gone)
        self.ready -= gone
        self._pending -= gone
        self.cache.drop_partitions(gone)
        if not self.persistent_state():
            for p in gone:  # an in-memory store is rebuilt on the next assignment anyway
                self.tables.pop(p, None)
                store = self._stores.pop(p, None)
                if store is not None:
                    store.close()
        self.on_revoked(gone)
        log.info("revoked", group=self.group, partitions=sorted(gone))

    def persistent_state(self) -> bool:
        return resolve_kind(self.state_settings.store) != "memory"

    def _index_raw(self, key: str, raw: bytes) -> Iterable[bytes] | None:
        if type(self).index_keys is TransactionalProcessor.index_keys:
            return None  # no indexes: restore copies bytes without decoding them
        return self.index_keys(key, self.state_from_record(self.codec.decode(raw, self.changelog_schema)))

    def _begin_restores(self) -> None:
        if not self._pending:
            return
        pending, self._pending = sorted(self._pending), set()
        if self.changelog_topic is None:
            for p in pending:
                self._finish_restore(p)
            return
        if self._restorer is None:
            restore_consumer = Consumer(consumer_config(
                self.kafka, f"{self.group}-restore-{self.instance_id}", **{"enable.partition.eof": True}))
            self._log_ends = Consumer(log_end_config(self.kafka, f"{self.group}-restore-{self.instance_id}"))
            self._restorer = Restorer(restore_consumer, self.changelog_topic, self.stage,
                                      self._index_raw, self.state_settings.restore_batch,
                                      lambda p, left, secs: self.stage_sensor.restore_remaining(self.stage, p, left, secs))
        if time.monotonic() < self._restore_retry_at:
            self._pending |= set(pending)
            return
        try:  # a metadata request for the changelog first: after a broker outage the restore
            # consumer may not know its partitions' leaders, and watermarks need them
            self._restorer.consumer.list_topics(self.changelog_topic, timeout=self.kafka.request_timeout_s)
        except KafkaException as exc:
            return self._retry_restores(pending, exc)
        for i, p in enumerate(pending):
            try:
                # The log's end, not the stable end a read_committed client is told: a checkpoint
                # past the stable end is not "another topic" when a transaction there (our own,
                # its commit markers not written yet, as right after a broker pause) is still
                # open. The restore then reads on until that transaction is settled.
                low, high = self._log_ends.get_watermark_offsets(
                    TopicPartition(self.changelog_topic, p), timeout=self.kafka.request_timeout_s)
            except KafkaException as exc:  # the broker is away: try again shortly
                return self._retry_restores(pending[i:], exc)
            table = self._table_for(p)
            self._restorer.begin(p, table, start_offset(table, self.persistent_state(), low, high, now_ms()),
                                 low, high)

    def _retry_restores(self, partitions: list[int], exc: KafkaException) -> None:
        """The broker did not answer the restore consumer: its partitions wait, and the
        consumer is replaced (one that lost its connections in a broker outage can stay
        unable to fetch metadata while every other client has reconnected)."""
        log.warning("cannot start restore yet", stage=self.stage, error=exc.args[0].str())
        self._pending |= set(partitions)
        self._restore_retry_at = time.monotonic() + 1.0
        self._reset_restorer()

    def _reset_restorer(self) -> None:
        if self._restorer is None:
            return
        self._pending |= set(self._restorer.active)
        for client in (self._restorer.consumer, self._log_ends):
            try:
                client.close()
            except (KafkaException, RuntimeError):
                pass
        self._restorer = self._log_ends = None

    def _restore_step(self) -> None:
        self._begin_restores()
        if self._restorer is not None and self._restorer.active:
            for p in self._restorer.step():
                self._finish_restore(p)
            if self._restorer is not None and self._restorer.stalled_s() > RESTORE_STALL_S:
                log.warning("restore made no progress; starting it again", stage=self.stage,
                            partitions=sorted(self._restorer.active))
                self._reset_restorer()

    def _finish_restore(self, partition: int) -> None:
        # every input topic's partition of this number shares the partition's state
        mine = [tp for tp in self.consumer.assignment() if tp.partition == partition]
        if not mine:
            return  # revoked while its restore finished
        self.ready.add(partition)
        self.on_restored(partition)
        self.consumer.resume(mine)

    # -- the loop -----------------------------------------------------------------------------
    def serve(self) -> None:
        """Runs the stage as its process's one job: SIGTERM and SIGINT stop it, and a consumer
        stuck out of its group ends the process for its supervisor (the module docstring)."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.run(watch=True)

    def run(self, max_seconds: float | None = None, watch: bool = False) -> None:
        """`watch`: end the process once the consumer is stuck out of its group, counting from
        its subscription. Waiting for the transaction coordinator and loading the side inputs
        come first and are not the group's to judge: a fresh broker creating its transaction
        log, or 100,000 fences to read, may take longer than `group_stall_s` and are no stall
        (`init_transactions` has a watchdog of its own)."""
        self._init_transactions()
        for side in self.side_inputs:
            side.on_skip = self.stage_sensor.skipped
            side.load()
        frozen = freeze_long_lived()  # the side inputs, out of the collector's walks
        log.info("side inputs loaded", stage=self.stage, frozen_objects=frozen)
        self._subscribe()
        watching = watch_group(self.health, log, self.stage) if watch else None
        stop_at = time.monotonic() + max_seconds if max_seconds else None
        try:
            while self.running and (stop_at is None or time.monotonic() < stop_at):
                self.step()
        finally:
            if watching is not None:
                watching.set()
            self.close()

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.inputs, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def stop(self, *_args) -> None:
        self.running = False

    def close(self) -> None:
        for closer in (self.consumer.close, *(s.close for s in self.side_inputs)):
            try:
                closer()
            except (KafkaException, RuntimeError):
                pass
        self._reset_restorer()  # its two clients
        self.producer.flush(10)
        for store in self._stores.values():
            store.close()

    def step(self) -> None:
        self._restore_step()
        msgs = [m for m in self._fetch() if not m.error()]
        for side in self.side_inputs:
            self._pending_changed |= side.poll(0)
        tick = self._tick_due()
        if not (msgs or self._pending_changed or tick or self.has_pending_work()):
            return
        if self._isolate_until:
            isolated = [m for m in msgs if m.offset() <= self._isolate_until.get((m.topic(), m.partition()), -1)]
            if isolated:
                self._isolate(isolated)
                return  # the rest of this fetch is read again after the rewind
            self._isolate_until.clear()
        self._transaction(msgs, tick)

    def _tick_due(self) -> bool:
        # Asked at most once a tick interval, whatever the answer: `wants_tick` may read the
        # store (the evaluator's first timer of each partition). Asked on every step of a busy
        # loop with nothing due, its seeks (then through deleted keys) were half the
        # evaluator's CPU in a REST benchmark run. A due timer still fires within a tick
        # interval of its time.
        now = time.monotonic()
        if now - max(self._last_tick, self._last_tick_check) < self.tick_interval_s:
            return False
        self._last_tick_check = now
        return self.wants_tick()

    def _fetch(self) -> list:
        # consume(n, t) returns early only with n records: below that it waits out t, and at
        # 10,000 updates/s that was 5 of the evaluator's 30 ms per transaction
        if self.waits_to_fill:
            return self.consumer.consume(self.max_batch, self.poll_timeout_s)
        msgs = self.consumer.consume(self.max_batch, 0)
        if msgs:
            return msgs
        first = self.consumer.poll(self.poll_timeout_s)  # returns at the first record
        if first is None:
            return []
        return [first, *self.consumer.consume(self.max_batch - 1, 0)] if self.max_batch > 1 else [first]

    def _transaction(self, msgs: list, tick: bool) -> None:
        txn = self._begin()
        if txn is None:
            return
        self._fetched = {(m.topic(), m.partition()) for m in msgs}
        try:
            if self._pending_changed or self.has_pending_work():
                self.on_side_input(txn, set(self._pending_changed))
            if tick:
                self._last_tick = time.monotonic()
                self.tick(txn)
            try:
                records = self._decode(msgs, txn)
                self._fetched = set()
                if records:
                    self.process(records, txn)
                self._commit(txn)
            except (KafkaException, ConfigurationError):
                raise
            except Exception as exc:  # the stage's logic raised on a record: find it, set it aside
                if not msgs:
                    raise
                log.error("batch failed; isolating its records", stage=self.stage, error=repr(exc))
                for m in msgs:
                    tp = (m.topic(), m.partition())
                    self._isolate_until[tp] = max(self._isolate_until.get(tp, -1), m.offset())
                self._give_up("processing")
                return
        except KafkaException as exc:
            self._recover(exc)
            return
        finally:
            self._fetched = set()
        self._pending_changed = set()
        self._committed(txn)

    def _isolate(self, msgs: list) -> None:
        """One record per transaction. The record that raises on its own is marked; after the
        rewind it is read again and dead-lettered (class `processing`) in the stage's normal
        flow, so the stage's own offset rules (held records) still decide what is committed."""
        for m in msgs:
            txn = self._begin()
            if txn is None:
                return
            try:
                records = self._decode([m], txn)
                if records:
                    self.process(records, txn)
                self._commit(txn)
            except KafkaException as exc:
                self._recover(exc)
                return
            except ConfigurationError:
                raise
            except Exception as exc:  # this is the poison record
                error = f"{type(exc).__name__}: {exc}"
                self._poison[(m.topic(), m.partition(), m.offset())] = error
                log.error("record set aside", stage=self.stage, topic=m.topic(),
                          partition=m.partition(), offset=m.offset(), error=error[:300])
                self._give_up("poison")
                return
            self._committed(txn)
        self._rewind()  # what was fetched after the isolated records is read again

    def _decode(self, msgs: list, txn: Txn) -> list[Record]:
        records = []
        for m in msgs:
            if m.partition() not in self.ready:
                continue  # fetched before a revoke/re-assign: read again (not committed) once ready
            txn.offsets[(m.topic(), m.partition())] = m.offset() + 1
            if m.value() is None and m.topic() in self.tombstones_ok:
                continue
            poison = self._poison.pop((m.topic(), m.partition(), m.offset()), None)
            if poison is not None:
                self.dead_letter(txn, None, m, "processing", poison)
                continue
            try:
                records.append(Record(m, self.codec.decode(m.value(), self.input_schemas[m.topic()])))
            except ValidationError as exc:
                self.dead_letter(txn, None, m, "undecodable", str(exc))
        return records

    def _begin(self) -> Txn | None:
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            self._recover(exc)
            return None
        self._open = Txn()
        self._touched = {}
        return self._open

    def _commit(self, txn: Txn) -> None:
        delivered: dict[int, int] = {}

        def on_delivery(err, msg):
            if err is None:
                delivered[msg.partition()] = max(delivered.get(msg.partition(), -1), msg.offset())

        changes = self.changelog_changes(txn, on_delivery)
        if txn.offsets:
            offsets = [TopicPartition(t, p, o) for (t, p), o in txn.offsets.items()]
            self._retrying("send_offsets_to_transaction", lambda timeout: self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), timeout), self.kafka.request_timeout_s)
        self._retrying("commit_transaction", lambda timeout: self.producer.commit_transaction(timeout),
                       self.kafka.request_timeout_s * 2)
        self.producer.poll(0)
        self.transactions += 1
        self._open = None
        self.apply_committed(txn, changes, {p: last + 1 for p, last in delivered.items()})

    def changelog_changes(self, txn: Txn, on_delivery: Callable | None = None) -> dict[int, list]:
        """The transaction's state changes, encoded and produced to the changelog: per
        partition, (key, value, index keys) in the order they were produced."""
        changes: dict[int, list] = {}
        for key, (partition, state) in txn.dirty.items():
            value = None if state is None else self.codec.encode(
                self.changelog_topic, self.changelog_schema, self.state_to_record(state))
            self.produce(txn, self.changelog_topic, key, value, partition, on_delivery)
            index = None if state is None else self.index_keys(key, state)
            changes.setdefault(partition, []).append((key, value, index))
        for (partition, name), value in txn.meta.items():
            self.produce(txn, self.changelog_topic, META_PREFIX + name, value, partition, on_delivery)
            changes.setdefault(partition, []).append((META_PREFIX + name, value, None))
        return changes

    def apply_committed(self, txn: Txn, changes: dict[int, list], next_offsets: dict[int, int]) -> None:
        """Once the transaction committed: its changes into the local stores (each checkpointed
        at the changelog offset after the last one delivered) and the decoded-state cache."""
        for partition, items in changes.items():
            table = self.tables.get(partition)
            if table is None:
                continue
            table.apply(items, next_offsets.get(partition))
            for key, _value, _index in items:
                if key.startswith(META_PREFIX):
                    continue
                state = txn.dirty[key][1]
                if state is None:
                    self.cache.pop(key)
                else:
                    self.cache.put(key, partition, state)

    def _committed(self, txn: Txn) -> None:
        for error_class in txn.tally.pop("_dlq", ()):
            self.stage_sensor.dead_lettered(self.stage, error_class)
        self.on_committed(txn)

    # -- faults -------------------------------------------------------------------------------
    def _watched(self, what: str, call: Callable[[float], Any], timeout_s: float) -> Any:
        """Runs a blocking transactional call, given `timeout_s`, with a watchdog. librdkafka
        can block in send_offsets_to_transaction far past its timeout when the group
        coordinator went away (librdkafka issues #5456, #5511); after every broker restart and
        pause in the fault tests some stage's call did. A call stuck that long cannot be
        cancelled, so the process exits for its supervisor once the call's own timeout and a
        grace have passed: the watchdog is what a stage's recovery from such a fault waits
        for. Nothing is lost that way: the open transaction is aborted by the broker
        (transaction.timeout.ms) or fenced by the successor's init_transactions, and the
        successor re-reads from the committed offsets."""
        future = self._calls.submit(call, timeout_s)
        try:
            return future.result(timeout=timeout_s + WATCHDOG_GRACE_S)
        except concurrent.futures.TimeoutError:
            exit_for_supervisor(log, f"{what} hung {timeout_s + WATCHDOG_GRACE_S:.0f} s, past its "
                                     f"timeout of {timeout_s:.0f} s", self.stage)

    def _retrying(self, what: str, call: Callable[[float], Any], timeout_s: float,
                  deadline_s: float = 60.0) -> None:
        """A retriable error (a timeout, a coordinator loading) is retried until the deadline;
        anything else, or the deadline, is raised for `_recover`."""
        deadline = time.monotonic() + deadline_s
        delay = 0.1
        while True:
            try:
                return self._watched(what, call, timeout_s)
            except KafkaException as exc:
                err = exc.args[0]
                if not err.retriable() or err.txn_requires_abort() or err.fatal() \
                        or time.monotonic() > deadline:
                    raise
                log.warning("retrying", stage=self.stage, error=err.str())
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _recover(self, exc: KafkaException) -> None:
        err = exc.args[0]
        if isinstance(err, KafkaError) and err.txn_requires_abort() and not err.fatal():
            log.warning("transaction aborted, rewinding", stage=self.stage, error=err.str())
            try:
                self._abort_transaction()
                self._give_up("aborted", abort=False)
                return
            except KafkaException as again:
                err = again.args[0]
        log.warning("producer failed, replacing it", stage=self.stage,
                    error=err.str() if isinstance(err, KafkaError) else str(err))
        self._replace_producer()
        self._give_up("producer-replaced", abort=False)

    def _replace_producer(self) -> None:
        now = time.monotonic()
        self._fenced_at = [t for t in self._fenced_at if now - t < 60] + [now]
        if len(self._fenced_at) > FENCED_LIMIT:
            raise ConfigurationError(
                f"{self.stage}: producer fenced {len(self._fenced_at)} times in a minute: is another "
                f"process running with --instance {self.instance_id}?")
        try:
            self.producer.flush(0)
        except (KafkaException, RuntimeError):
            pass
        self.producer = self._new_producer_instance()
        self._init_transactions()

    def _init_transactions(self) -> None:
        delay = 0.5
        while self.running:
            try:
                self._watched("init_transactions", lambda timeout: self.producer.init_transactions(timeout),
                             self.kafka.request_timeout_s * 2)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal():
                    self.producer = self._new_producer_instance()
                log.warning("waiting for the transaction coordinator", stage=self.stage,
                            error=err.str(), retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _abort_transaction(self) -> None:
        self._retrying("abort_transaction", lambda timeout: self.producer.abort_transaction(timeout),
                       self.kafka.request_timeout_s * 2)

    def _abort_quietly(self) -> None:
        try:
            self._abort_transaction()
        except KafkaException as exc:
            log.warning("abort failed, replacing the producer", stage=self.stage, error=exc.args[0].str())
            self._replace_producer()
        self._open = None

    def _give_up(self, cause: str, abort: bool = True) -> None:
        if abort:
            self._abort_quietly()
        self._open = None
        self.aborted += 1
        self.stage_sensor.recovered(self.stage, cause)
        self._rewind()

    def _rewind(self) -> None:
        """Cached state and positions back to the last commit. A commit whose outcome was not
        known (the broker went away mid-commit) may have committed after all: the stores,
        written only after a commit we saw succeed, are then behind the changelog, so every
        partition's store is brought up to the changelog's end again (a tail restore) before
        its input is read again."""
        self.cache.clear()
        self._open = None
        delay, failures = 0.2, 0
        while self.running:
            assigned = [tp for tp in self.consumer.assignment() if tp.partition in self.ready]
            try:
                committed = self.consumer.committed(assigned, timeout=self.kafka.request_timeout_s) if assigned else []
                self._starts.clear()
                for tp in committed:
                    self.consumer.seek(TopicPartition(tp.topic, tp.partition,
                                                      tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
                break
            except KafkaException as exc:
                failures += 1
                if failures >= REWIND_TRIES:
                    return self._replace_consumer(exc.args[0].str())
                log.warning("cannot rewind yet", stage=self.stage, error=exc.args[0].str(), retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        again, self.ready = self.ready, set()
        if again:
            self.consumer.pause([tp for tp in self.consumer.assignment() if tp.partition in again])
            self._pending |= again
        self.on_rewind()

    def _replace_consumer(self, error: str) -> None:
        """A consumer that lost its group coordinator in a broker outage can keep timing out on
        its committed offsets after every other client has reconnected (seen after a broker
        SIGKILL or SIGSTOP). A new one joins the group again and starts every partition it is
        given from the committed offsets, with a tail restore first, as a restarted process
        would."""
        log.warning("cannot read committed offsets; replacing the consumer", stage=self.stage, error=error)
        old = self.consumer
        restoring = set(self._restorer.active) if self._restorer is not None else set()
        self._forget(set(self.ready) | self._pending | restoring)
        self._reset_restorer()
        self._pending = set()  # the new consumer's assignment says which partitions are ours
        # a close hung on the lost coordinator exits for the supervisor
        self._watched("closing the consumer", lambda _timeout: old.close(), self.kafka.request_timeout_s * 2)
        self.consumer = self._new_consumer()
        self._subscribe()
        self.on_rewind()
