"""The geofence evaluator: location updates in, ENTER / EXIT / DWELL out, in Kafka transactions.

Why not a Faust agent: Faust's changelog writes, output sends and offset commits are not
atomic. After a SIGKILL the restored membership could be ahead of the committed offset, and the
replayed update would then produce no ENTER: a lost event. `TransactionalProcessor` puts
events, the entity-state changelog and the consumed offsets in one transaction. The pure state
machine (`streams.membership`) does the thinking; this module only moves records.

Partitions and keys: `geo.locations` and `geo.evaluator-state` are co-partitioned; an entity's
state is keyed by `tenant/entity_id` (entity ids are unique only within a tenant); events go out
keyed by `tenant/geofence_id`. Every instance reads the whole compacted `geo.geofences` topic
into its own index (a side input) and keeps it in sync while running. Each partition's store
indexes its entities by fence, by grid cell and by dwell timer (`streams.evaluator_index`), so
a fence edit or a timer tick touches only the entities it concerns.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaException

from geoflux.errors import ValidationError
from geoflux.keys import check_tenant, scoped, unscoped
from geoflux.settings import GeofenceSettings, KafkaSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams import evaluator_index as ix
from streams.evaluator_records import (REPLY_ATTRIBUTE, chunk_name, chunk_record, event_record, reply_partition,
                                       state_from_record, state_to_record, update_from_record)
from streams.fence_index import FenceIndex
from streams.geofence import fence_from_record
from streams.membership import EntityState, MembershipMachine
from streams.runtime.sensor import EvaluatorSensor, NullEvaluatorSensor, StageSensor
from streams.state.timers import TIMERS, due_keys, next_due
from streams.runtime.txn_processor import Txn, Record, TransactionalProcessor, now_ms
from connectors.topic_reader import TopicReader

log = structlog.get_logger("geoflux.evaluator")

FULL_RECONCILE_ABOVE = 500  # fences changed while a partition was away: past this, check all its entities
FENCES_META = "fences"


@dataclass
class EvaluatorStats:
    updates: int = 0
    events: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    fence_changes: int = 0
    restored_partitions: int = 0


class EvaluatorStage(TransactionalProcessor):
    changelog_schema = "EntityState"
    stage = "evaluator"
    waits_to_fill = False  # its latency target is tens of milliseconds

    def __init__(self, kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                 instance_id: str = "0", sensor: EvaluatorSensor | None = None,
                 state: StreamSettings | None = None, stage_sensor: StageSensor | None = None) -> None:
        self.t_locations = topic("geo.locations", kafka)
        self.t_entities = topic("geo.entities", kafka)
        self.t_dlq = topic("geo.locations.dlq", kafka)
        super().__init__(kafka, codec, group=kafka.topic_prefix + geo.group_id,
                         instance_id=instance_id,
                         inputs={self.t_locations: "LocationUpdate", self.t_entities: "EntityAttributes"},
                         dlq_topic=self.t_dlq, max_batch=geo.max_batch,
                         poll_timeout_s=geo.poll_timeout_s, tick_interval_s=geo.tick_interval_s,
                         state=state, sensor=stage_sensor)
        self.geo = geo
        self.tombstones_ok = {self.t_entities}  # compacted: a tombstone forgets an entity's attributes
        self.changelog_topic = topic("geo.evaluator-state", kafka)
        self.t_events = topic("geo.geofence-events", kafka)
        self.t_eval = topic("geo.evaluations", kafka)
        self.eval_partitions: int | None = None  # known once a partition is restored
        self.index = FenceIndex()
        self.machine = MembershipMachine(self.index, int(geo.allowed_lateness_s * 1000),
                                         geo.history_max_points)
        self.to_reconcile: set[int] = set()  # partitions restored: fences may have changed meanwhile
        self.fence_offsets: dict[str, tuple[int, int]] = {}  # scoped fence id -> (partition, offset)
        self.stats = EvaluatorStats()
        self.eval_sensor = sensor or NullEvaluatorSensor()
        self.fences = TopicReader(kafka, topic("geo.geofences", kafka), "Geofence", codec,
                                  self._apply_fence)
        self.side_inputs.append(self.fences)

    # -- state --------------------------------------------------------------------------------
    def state_from_record(self, rec: dict) -> EntityState:
        return state_from_record(rec)

    def decode_state(self, key: str, partition: int, raw: bytes) -> EntityState:
        table = self.table(partition)

        def chunk(c: int) -> dict | None:
            data = table.meta(chunk_name(key, c))
            return None if data is None else self.codec.decode(data, self.changelog_schema)
        return state_from_record(self.codec.decode(raw, self.changelog_schema), chunk)

    def state_to_record(self, state: EntityState) -> dict:
        return state_to_record(state, chunked=True)

    def changelog_changes(self, txn: Txn, on_delivery=None) -> dict[int, list]:
        """Each changed entity's history chunks that changed, in the same transaction as its
        record (`streams.entity_history`): the record itself then holds the newest only."""
        for key, (partition, state) in txn.dirty.items():
            if state is None:
                continue
            split = state.history.split()
            for c, start, end in split.write:
                self.put_meta(txn, partition, chunk_name(key, c), self.codec.encode(
                    self.changelog_topic, self.changelog_schema, chunk_record(state, start, end)))
            for c in split.drop:
                self.put_meta(txn, partition, chunk_name(key, c), None)
        return super().changelog_changes(txn, on_delivery)

    def index_keys(self, key: str, state: EntityState):
        return ix.entity_index_keys(key, state)

    def on_restored(self, partition: int) -> None:
        self.stats.restored_partitions += 1
        self.to_reconcile.add(partition)
        if self.eval_partitions is None:
            self.eval_partitions = self._partition_count(self.t_eval)

    def _partition_count(self, name: str) -> int | None:
        """A topic's partitions, or None (answers then go by their key) if the broker does not
        say. Partitions are only ever added, so a count learned once stays safe to choose below."""
        try:
            t = self.producer.list_topics(name, timeout=self.kafka.request_timeout_s).topics.get(name)
        except KafkaException:
            return None
        return len(t.partitions) if t is not None and t.error is None and t.partitions else None

    def on_revoked(self, partitions: set[int]) -> None:
        self.to_reconcile -= partitions

    def has_pending_work(self) -> bool:
        return bool(self.to_reconcile)

    def wants_tick(self) -> bool:
        """A DWELL timer is due in some partition (the first timer of each is the earliest)."""
        now = now_ms()
        return any((due := next_due(self.table(p).index(TIMERS))) is not None and due <= now
                   for p in self.ready)

    # -- geofences ----------------------------------------------------------------------------
    def _apply_fence(self, key: str, rec: dict | None, msg) -> bool:
        fid = scoped(rec["tenant_id"], rec["geofence_id"]) if rec is not None else _fence_key(key)
        self.fence_offsets[fid] = (msg.partition(), msg.offset())
        if rec is None or rec.get("deleted"):
            return self.index.remove(fid) is not None
        current = self.index.get(fid)
        if current is not None and rec["version"] < current.version:
            return False
        self.index.upsert(fence_from_record(rec, self.geo.hysteresis_m))
        return True

    def on_side_input(self, txn: Txn, changed: set[str]) -> None:
        """A fence edit reconciles the entities it can concern; a restored partition, those of
        the fences that changed since its state last recorded reconciling them."""
        fences = {_fence_key(k) for k in changed}
        if fences:
            self.stats.fence_changes += len(fences)
            for p in sorted(self.ready):
                self._reconcile_fences(txn, p, fences)
        restored, self.to_reconcile = self.to_reconcile & self.ready, set()
        for p in sorted(restored):
            since = self._changed_since(p)
            if since is None or len(since) > FULL_RECONCILE_ABOVE:
                self._reconcile(txn, p, {key for key, _ in self.states(p)}, None)
            elif since:
                self._reconcile_fences(txn, p, since)
        if fences or restored:
            positions = json.dumps({str(p): o for p, o in self.fences.positions.items()}).encode()
            for p in self.ready:
                self.put_meta(txn, p, FENCES_META, positions)

    def _changed_since(self, partition: int) -> set[str] | None:
        raw = self.table(partition).meta(FENCES_META)
        if raw is None:
            return None  # never reconciled here (a new partition, or written before this existed)
        seen = {int(p): o for p, o in json.loads(raw).items()}
        return {fid for fid, (p, off) in self.fence_offsets.items() if off >= seen.get(p, 0)}

    def _reconcile_fences(self, txn: Txn, partition: int, fences: set[str]) -> None:
        table, keys = self.table(partition), set()
        for fid in fences:
            prefix = ix.MEMBERS + ix.members_prefix(fid)
            keys |= {ik[len(prefix):].decode() for ik in table.index(prefix)}
            fence = self.index.get(fid)
            if fence is not None:
                for start, stop in ix.grid_columns(fence.tenant_id, fence.search_geometry.bounds):
                    keys |= {ix.grid_key(ik[1:]) for ik in table.index_range(ix.GRID + start, ix.GRID + stop)}
        self._reconcile(txn, partition, keys, fences)

    def _reconcile(self, txn: Txn, partition: int, keys: set[str], only: set[str] | None) -> None:
        states = [(k, s) for k, s in ((k, self.state(k, partition)) for k in sorted(keys)) if s and s.last]
        zones = self.index.zones([s.last.lon for _, s in states], [s.last.lat for _, s in states])
        ts = now_ms()
        for (key, state), z in zip(states, zones):
            out = self.machine.reconcile(state, z, ts, only)
            if out:
                self._emit(txn, out, ts, state.attributes)
                self.mark_dirty(txn, key, state, partition)

    # -- location updates ---------------------------------------------------------------------
    def _attributes(self, r: Record, txn: Txn) -> None:
        """The stream-table join: an entity's attributes (geo.entities, co-partitioned with
        geo.locations) kept in its state, so every later event of it carries them."""
        rec = r.rec
        try:
            tenant = check_tenant(rec["tenant_id"])
        except ValidationError as exc:
            self.dead_letter(txn, None, r, "validation", str(exc))
            return
        key = scoped(tenant, rec["entity_id"])
        state = self.state(key, r.partition())
        if state is None:
            state = EntityState(rec["entity_id"], tenant)
            self.put_state(r.partition(), key, state)
        state.attributes = {} if rec["deleted"] else dict(rec["attributes"])
        self.mark_dirty(txn, key, state)

    def process(self, records: list[Record], txn: Txn) -> None:
        # per record: one lookup, one machine step, one mark; counts are kept per batch
        decoded = []
        for r in records:
            if r.msg.topic() == self.t_entities:
                self._attributes(r, txn)
                continue
            try:
                decoded.append((r, update_from_record(r.rec)))
            except ValidationError as exc:
                self.stats.dead_lettered += 1
                self._tally(txn, "dlq", "validation")
                self.dead_letter(txn, None, r, "validation", str(exc))
        if not decoded:
            return
        zones = self.index.zones([u.lon for _, u in decoded], [u.lat for _, u in decoded])
        self.stats.updates += len(decoded)
        txn.tally["updates"] = txn.tally.get("updates", 0) + len(decoded)
        produced = txn.tally.setdefault("produced_ms", [])
        apply = self.machine.apply
        for (r, upd), z in zip(decoded, zones):
            rec = r.rec
            produced_ms = rec.get("produced_ms")
            if produced_ms:
                produced.append(produced_ms)
            key = scoped(upd.tenant_id, upd.entity_id)
            partition = r.msg.partition()
            state = self.state(key, partition)
            if state is None:
                state = EntityState(upd.entity_id, upd.tenant_id)
                self.put_state(partition, key, state)
            outcome = apply(state, upd, z)
            if outcome.kind == "applied":
                self.mark_dirty(txn, key, state, partition)
                if outcome.transitions:
                    self._emit(txn, outcome.transitions, produced_ms, state.attributes)
            elif outcome.kind == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.dead_lettered += 1
                self._tally(txn, "dlq", outcome.kind)
                self.dead_letter(txn, None, r, outcome.kind, outcome.reason)
            attributes = rec.get("attributes")
            if attributes and attributes.get(REPLY_ATTRIBUTE):
                self._reply(txn, attributes, upd, state, outcome)

    def _emit(self, txn: Txn, transitions, produced_ms: int | None, attributes: dict) -> None:
        for t in transitions:
            self.emit(txn, self.t_events, scoped(t.tenant_id, t.geofence_id), "GeofenceEvent",
                      event_record(t, produced_ms, attributes))
            self.stats.events += 1
            self._tally(txn, "events", t.event_type)

    @staticmethod
    def _tally(txn: Txn, what: str, label: str) -> None:
        counts = txn.tally.setdefault(what, {})
        counts[label] = counts.get(label, 0) + 1

    def on_committed(self, txn: Txn) -> None:
        if not txn.tally:
            return
        now = now_ms()
        self.eval_sensor.committed(txn.tally.get("updates", 0), txn.tally.get("events", {}),
                              txn.tally.get("dlq", {}),
                              [max(0, now - p) / 1000 for p in txn.tally.get("produced_ms", ())],
                              time.monotonic() - txn.started)

    def _reply(self, txn: Txn, attributes: dict, upd, state: EntityState, outcome) -> None:
        request_id = attributes[REPLY_ATTRIBUTE]
        rec = {"request_id": request_id, "entity_id": upd.entity_id, "ts_ms": upd.ts_ms,
               "outcome": outcome.kind, "reason": outcome.reason,
               "inside": sorted(state.memberships),
               "events": [{"event_id": t.event_id, "event_type": t.event_type,
                           "geofence_id": t.geofence_id, "geofence_version": t.geofence_version,
                           "ts_ms": t.ts_ms} for t in outcome.transitions]}
        self.produce(txn, self.t_eval, request_id, self.codec.encode(self.t_eval, "EvaluationResult", rec),
                     partition=reply_partition(attributes, self.eval_partitions))

    # -- dwell timers -------------------------------------------------------------------------
    def tick(self, txn: Txn) -> None:
        now = now_ms()
        for p in sorted(self.ready):
            for key in due_keys(self.table(p).index(TIMERS), now):
                state = self.state(key, p)
                if state is None:
                    continue
                out = self.machine.due_dwells(state, now)
                if out:
                    self._emit(txn, out, now, state.attributes)
                    self.mark_dirty(txn, key, state, p)


def _fence_key(topic_key: str) -> str:
    """Fence topic keys are scoped (tenant/id); a key written before ids were scoped is taken as
    a fence of tenant `default`."""
    try:
        unscoped(topic_key)
        return topic_key
    except ValidationError:
        return scoped("default", topic_key)


def run_evaluator(kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                  instance_id: str, sensor: EvaluatorSensor | None = None,
                  stage_sensor: StageSensor | None = None) -> None:
    ev = EvaluatorStage(kafka, geo, codec, instance_id, sensor, stage_sensor=stage_sensor)
    ev.serve()
    log.info("evaluator stopped", transactions=ev.transactions, aborted=ev.aborted,
             **ev.stats.__dict__)
