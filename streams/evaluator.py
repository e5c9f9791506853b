"""The geofence evaluator: a consume-transform-produce loop in Kafka transactions.

Why not a Faust agent: Faust's changelog writes, output sends and offset commits are not
atomic (its exactly-once mode has open bugs, see FAUST-NOTES.md). After a SIGKILL the restored
membership could be ahead of the committed offset, and the replayed update would then produce
no ENTER: a lost event. Here one transaction per batch carries the geofence events, the
entity-state changelog records and the consumed offsets, so after any crash state, output and
position agree. The pure state machine (`streams.membership`) does the thinking; this module
only moves records.

Partitions: `geo.locations` and `geo.evaluator-state` are co-partitioned by entity id; events
go out keyed by geofence id. Every instance reads the whole compacted `geo.geofences` topic
into its own index and keeps it in sync while running.
"""

from __future__ import annotations

import heapq
import json
import signal
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from geoflux.errors import GeofluxError, ValidationError
from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.evaluator_records import (REPLY_ATTRIBUTE, event_record, state_from_record,
                                       state_to_record, update_from_record)
from streams.fence_index import FenceIndex
from streams.geofence import fence_from_record
from streams.membership import EntityState, MembershipMachine, Transition

log = structlog.get_logger("geoflux.evaluator")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class EvaluatorStats:
    updates: int = 0
    events: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    transactions: int = 0
    aborted: int = 0
    fence_changes: int = 0
    restored_entities: int = 0


@dataclass
class _Batch:
    """What one transaction will carry."""

    dirty: dict[str, EntityState] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    events: int = 0


class Evaluator:
    def __init__(self, kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                 instance_id: str = "0") -> None:
        self.kafka, self.geo, self.codec = kafka, geo, codec
        self.t_loc = topic("geo.locations", kafka)
        self.t_state = topic("geo.evaluator-state", kafka)
        self.t_fences = topic("geo.geofences", kafka)
        self.t_events = topic("geo.geofence-events", kafka)
        self.t_dlq = topic("geo.locations.dlq", kafka)
        self.t_eval = topic("geo.evaluations", kafka)
        self.group = kafka.topic_prefix + geo.group_id
        self.instance_id = instance_id
        self.index = FenceIndex()
        self.machine = MembershipMachine(self.index, int(geo.allowed_lateness_s * 1000),
                                         geo.history_per_entity)
        self.states: dict[int, dict[str, EntityState]] = {}
        self.partition_of: dict[str, int] = {}
        self.dwell_heap: list[tuple[int, str]] = []
        self.pending_reconcile: set[str] = set()
        self.stats = EvaluatorStats()
        self.running = True
        self._last_tick = 0.0
        base = {"bootstrap.servers": kafka.bootstrap, "socket.connection.setup.timeout.ms": 5000}
        self.consumer = Consumer({
            **base, "group.id": self.group, "enable.auto.commit": False,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 120_000, "fetch.wait.max.ms": 5,
        })
        self.producer = Producer({
            **base, "transactional.id": f"{self.group}-{instance_id}",
            "enable.idempotence": True, "acks": "all", "linger.ms": 1,
            "transaction.timeout.ms": 15_000, "compression.type": "lz4",
        })
        self.fence_consumer = Consumer({
            **base, "group.id": f"{self.group}-fences-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": True,
        })
        self._fence_eof: set[int] = set()

    # -- geofences ----------------------------------------------------------------------------
    def load_fences(self, timeout_s: float = 60.0) -> None:
        """Reads the compacted geofence topic to its end before any location is evaluated."""
        md = self.fence_consumer.list_topics(self.t_fences, timeout=self.kafka.request_timeout_s)
        parts = list(md.topics[self.t_fences].partitions)
        self.fence_consumer.assign([TopicPartition(self.t_fences, p, OFFSET_BEGINNING) for p in parts])
        deadline = time.monotonic() + timeout_s
        while len(self._fence_eof) < len(parts):
            if time.monotonic() > deadline:
                raise GeofluxError(f"geofence topic {self.t_fences} not read to its end within {timeout_s}s")
            self._poll_fences(0.2, bootstrap=True)
        log.info("fences loaded", count=len(self.index))

    def _poll_fences(self, timeout: float, bootstrap: bool = False) -> set[str]:
        changed: set[str] = set()
        for msg in self.fence_consumer.consume(500, timeout):
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    self._fence_eof.add(msg.partition())
                continue
            gid = msg.key().decode() if msg.key() else None
            if gid is None:
                continue
            try:
                rec = self.codec.decode(msg.value(), "Geofence") if msg.value() else None
            except ValidationError as exc:
                log.error("undecodable geofence record skipped", geofence_id=gid, error=str(exc))
                continue
            if rec is None or rec.get("deleted"):
                if self.index.remove(gid) is not None:
                    changed.add(gid)
            else:
                current = self.index.get(gid)
                if current is None or rec["version"] >= current.version:
                    self.index.upsert(fence_from_record(rec, self.geo.hysteresis_m))
                    changed.add(gid)
        if changed and not bootstrap:
            self.stats.fence_changes += len(changed)
        return changed

    # -- partition assignment -----------------------------------------------------------------
    def _on_assign(self, consumer, partitions) -> None:
        for tp in partitions:
            self.states[tp.partition] = self._restore(tp.partition)
            for entity in self.states[tp.partition]:
                self.partition_of[entity] = tp.partition
                self.pending_reconcile.add(entity)
                due = self.machine.next_dwell_due(self.states[tp.partition][entity])
                if due is not None:
                    heapq.heappush(self.dwell_heap, (due, entity))
        log.info("assigned", partitions=[tp.partition for tp in partitions],
                 entities=sum(len(self.states[tp.partition]) for tp in partitions))

    def _on_revoke(self, consumer, partitions) -> None:
        for tp in partitions:
            for entity in self.states.pop(tp.partition, {}):
                self.partition_of.pop(entity, None)
                self.pending_reconcile.discard(entity)
        log.info("revoked", partitions=[tp.partition for tp in partitions])

    def _restore(self, partition: int) -> dict[str, EntityState]:
        """Reads this partition's committed changelog to its end (the last stable offset)."""
        restorer = Consumer({"bootstrap.servers": self.kafka.bootstrap,
                             "group.id": f"{self.group}-restore-{uuid.uuid4().hex[:8]}",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "enable.partition.eof": True})
        states: dict[str, EntityState] = {}
        try:
            restorer.assign([TopicPartition(self.t_state, partition, OFFSET_BEGINNING)])
            deadline = time.monotonic() + 120
            done = False
            while not done:
                if time.monotonic() > deadline:
                    raise GeofluxError(f"restoring {self.t_state}[{partition}] took over 120 s")
                for msg in restorer.consume(1000, 0.5):
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            done = True
                        continue
                    entity = msg.key().decode()
                    if msg.value() is None:
                        states.pop(entity, None)
                    else:
                        states[entity] = state_from_record(self.codec.decode(msg.value(), "EntityState"))
        finally:
            restorer.close()
        self.stats.restored_entities += len(states)
        return states

    # -- the loop -----------------------------------------------------------------------------
    def run(self, max_seconds: float | None = None) -> EvaluatorStats:
        self.producer.init_transactions(self.kafka.request_timeout_s * 4)
        self.load_fences()
        self.consumer.subscribe([self.t_loc], on_assign=self._on_assign, on_revoke=self._on_revoke)
        stop_at = time.monotonic() + max_seconds if max_seconds else None
        try:
            while self.running and (stop_at is None or time.monotonic() < stop_at):
                self.step()
        finally:
            self.close()
        return self.stats

    def stop(self, *_args) -> None:
        self.running = False

    def close(self) -> None:
        for closer in (self.consumer.close, self.fence_consumer.close):
            try:
                closer()
            except (KafkaException, RuntimeError):
                pass
        self.producer.flush(10)

    def step(self) -> None:
        msgs = self.consumer.consume(self.geo.max_batch, self.geo.poll_timeout_s)
        changed = self._poll_fences(0)
        tick = time.monotonic() - self._last_tick >= self.geo.tick_interval_s
        if not (msgs or changed or self.pending_reconcile or (tick and self.dwell_heap)):
            return
        batch = _Batch()
        self.producer.begin_transaction()
        try:
            if changed or self.pending_reconcile:
                self._reconcile(batch, changed)
            if msgs:
                self._evaluate(msgs, batch)
            if tick:
                self._last_tick = time.monotonic()
                self._fire_dwells(batch)
            for entity, state in batch.dirty.items():
                self.producer.produce(self.t_state, key=entity,
                                      value=self.codec.encode(self.t_state, "EntityState",
                                                              state_to_record(state)))
            if batch.offsets:
                self.producer.send_offsets_to_transaction(
                    [TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()],
                    self.consumer.consumer_group_metadata(), self.kafka.request_timeout_s)
            self.producer.commit_transaction(self.kafka.request_timeout_s * 2)
            self.stats.transactions += 1
            self.stats.events += batch.events
        except KafkaException as exc:
            self._recover(exc)

    def _recover(self, exc: KafkaException) -> None:
        """An aborted batch: rewind input and in-memory state to what the changelog holds."""
        err = exc.args[0]
        if not err.txn_requires_abort():
            raise exc  # fatal (fenced by a newer instance, or misconfigured): exit, restart
        log.warning("transaction aborted, rewinding", error=err.str())
        self.producer.abort_transaction(self.kafka.request_timeout_s * 2)
        self.stats.aborted += 1
        assigned = self.consumer.assignment()
        committed = self.consumer.committed(assigned, timeout=self.kafka.request_timeout_s)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition,
                                              tp.offset if tp.offset >= 0 else OFFSET_BEGINNING))
        self._on_revoke(self.consumer, assigned)
        self._on_assign(self.consumer, assigned)

    def _emit(self, batch: _Batch, transitions, produced_ms: int | None, attributes=None) -> None:
        for t in transitions:
            self.producer.produce(self.t_events, key=t.geofence_id,
                                  value=self.codec.encode(self.t_events, "GeofenceEvent",
                                                          event_record(t, produced_ms, attributes)))
            batch.events += 1
            if t.event_type == "ENTER":
                due = self.machine.next_dwell_due(self._state(t.entity_id))
                if due is not None:
                    heapq.heappush(self.dwell_heap, (due, t.entity_id))

    def _state(self, entity: str) -> EntityState | None:
        part = self.partition_of.get(entity)
        return None if part is None else self.states.get(part, {}).get(entity)

    def _reconcile(self, batch: _Batch, changed: set[str]) -> None:
        """Restored entities are checked against every fence; on an edit, every local entity
        is checked against the edited fences only."""
        restored, self.pending_reconcile = self.pending_reconcile, set()
        if restored:
            self._reconcile_entities(batch, restored, None)
        if changed:
            self._reconcile_entities(batch, set(self.partition_of), changed)

    def _reconcile_entities(self, batch: _Batch, entities: set[str], only: set[str] | None) -> None:
        states = [s for s in (self._state(e) for e in sorted(entities)) if s and s.last]
        zones = self.index.zones([s.last.lon for s in states], [s.last.lat for s in states])
        ts = now_ms()
        for state, z in zip(states, zones):
            out = self.machine.reconcile(state, z, ts, only)
            if out:
                self._emit(batch, out, ts)
                batch.dirty[state.entity_id] = state

    def _evaluate(self, msgs, batch: _Batch) -> None:
        decoded = []
        for msg in msgs:
            if msg.error():
                continue
            batch.offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
            try:
                rec = self.codec.decode(msg.value(), "LocationUpdate")
                decoded.append((msg, rec, update_from_record(rec)))
            except ValidationError as exc:
                self._dead_letter(msg, "validation", str(exc))
        zones = self.index.zones([u.lon for _, _, u in decoded], [u.lat for _, _, u in decoded])
        for (msg, rec, upd), z in zip(decoded, zones):
            self.stats.updates += 1
            part = msg.partition()
            pstates = self.states.setdefault(part, {})
            state = pstates.get(upd.entity_id)
            if state is None:
                state = pstates[upd.entity_id] = EntityState(upd.entity_id, upd.tenant_id)
                self.partition_of[upd.entity_id] = part
            outcome = self.machine.apply(state, upd, z)
            if outcome.kind == "duplicate":
                self.stats.duplicates += 1
            elif outcome.rejected:
                self._dead_letter(msg, outcome.kind, outcome.reason)
            else:
                batch.dirty[upd.entity_id] = state
                self._emit(batch, outcome.transitions, rec.get("produced_ms"))
            reply_to = (rec.get("attributes") or {}).get(REPLY_ATTRIBUTE)
            if reply_to:
                self._reply(reply_to, upd, state, outcome)

    def _reply(self, request_id: str, upd, state: EntityState, outcome) -> None:
        rec = {"request_id": request_id, "entity_id": upd.entity_id, "ts_ms": upd.ts_ms,
               "outcome": outcome.kind, "reason": outcome.reason,
               "inside": sorted(state.memberships),
               "events": [{"event_id": t.event_id, "event_type": t.event_type,
                           "geofence_id": t.geofence_id, "geofence_version": t.geofence_version,
                           "ts_ms": t.ts_ms} for t in outcome.transitions]}
        self.producer.produce(self.t_eval, key=request_id,
                              value=self.codec.encode(self.t_eval, "EvaluationResult", rec))

    def _fire_dwells(self, batch: _Batch) -> None:
        now = now_ms()
        while self.dwell_heap and self.dwell_heap[0][0] <= now:
            _, entity = heapq.heappop(self.dwell_heap)
            state = self._state(entity)
            if state is None:
                continue  # moved to another instance, which has its own timer
            out = self.machine.due_dwells(state, now)
            if out:
                self._emit(batch, out, now)
                batch.dirty[entity] = state

    def _dead_letter(self, msg, error_class: str, message: str) -> None:
        now = now_ms()
        rec = {"dlq_id": f"{msg.topic()}:{msg.partition()}:{msg.offset()}",
               "original_topic": msg.topic(), "original_partition": msg.partition(),
               "original_offset": msg.offset(), "original_key": msg.key(),
               "original_value": msg.value(), "error_class": error_class,
               "error_message": message, "attempts": 1, "first_failure_ms": now,
               "last_failure_ms": now, "redrive_topic": msg.topic()}
        self.producer.produce(self.t_dlq, key=msg.key(),
                              value=self.codec.encode(self.t_dlq, "DlqRecord", rec))
        self.stats.dead_lettered += 1


def run_evaluator(kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                  instance_id: str) -> None:
    ev = Evaluator(kafka, geo, codec, instance_id)
    signal.signal(signal.SIGTERM, ev.stop)
    signal.signal(signal.SIGINT, ev.stop)
    stats = ev.run()
    log.info("evaluator stopped", **json.loads(json.dumps(stats.__dict__)))
