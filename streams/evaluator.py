"""The geofence evaluator: location updates in, ENTER / EXIT / DWELL out, in Kafka transactions.

Why not a Faust agent: Faust's changelog writes, output sends and offset commits are not
atomic (its exactly-once mode has open bugs, see FAUST-NOTES.md). After a SIGKILL the restored
membership could be ahead of the committed offset, and the replayed update would then produce
no ENTER: a lost event. `TransactionalProcessor` puts events, the entity-state changelog and
the consumed offsets in one transaction. The pure state machine (`streams.membership`) does
the thinking; this module only moves records.

Partitions: `geo.locations` and `geo.evaluator-state` are co-partitioned by entity id; events
go out keyed by geofence id. Every instance reads the whole compacted `geo.geofences` topic
into its own index (a side input) and keeps it in sync while running.
"""

from __future__ import annotations

import heapq
import signal
import time
from dataclasses import dataclass

import structlog

from geoflux.errors import ValidationError
from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.evaluator_records import (REPLY_ATTRIBUTE, event_record, state_from_record,
                                       state_to_record, update_from_record)
from streams.fence_index import FenceIndex
from streams.geofence import fence_from_record
from streams.membership import EntityState, MembershipMachine
from streams.sensor import EvaluatorSensor, NullEvaluatorSensor
from streams.txn_processor import Batch, SideInput, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.evaluator")


@dataclass
class EvaluatorStats:
    updates: int = 0
    events: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    fence_changes: int = 0
    restored_entities: int = 0


class Evaluator(TransactionalProcessor):
    changelog_schema = "EntityState"

    def __init__(self, kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                 instance_id: str = "0", sensor: EvaluatorSensor | None = None) -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + geo.group_id,
                         instance_id=instance_id, inputs=[topic("geo.locations", kafka)],
                         max_batch=geo.max_batch, poll_timeout_s=geo.poll_timeout_s,
                         tick_interval_s=geo.tick_interval_s)
        self.geo = geo
        self.changelog_topic = topic("geo.evaluator-state", kafka)
        self.t_events = topic("geo.geofence-events", kafka)
        self.t_dlq = topic("geo.locations.dlq", kafka)
        self.t_eval = topic("geo.evaluations", kafka)
        self.index = FenceIndex()
        self.machine = MembershipMachine(self.index, int(geo.allowed_lateness_s * 1000),
                                         geo.history_max_points)
        self.dwell_heap: list[tuple[int, str]] = []
        self.pending_reconcile: set[str] = set()
        self.stats = EvaluatorStats()
        self.sensor = sensor or NullEvaluatorSensor()
        self.side_inputs.append(SideInput(kafka, topic("geo.geofences", kafka), "Geofence",
                                          codec, self._apply_fence))

    # -- state --------------------------------------------------------------------------------
    def state_from_record(self, rec: dict) -> EntityState:
        return state_from_record(rec)

    def state_to_record(self, state: EntityState) -> dict:
        return state_to_record(state)

    def on_restored(self, partition: int, states: dict[str, EntityState]) -> None:
        self.stats.restored_entities += len(states)
        for entity, state in states.items():
            self.pending_reconcile.add(entity)
            self._schedule_dwell(entity, state)

    def has_pending_work(self) -> bool:
        return bool(self.pending_reconcile)

    def wants_tick(self) -> bool:
        return bool(self.dwell_heap)

    # -- geofences ----------------------------------------------------------------------------
    def _apply_fence(self, gid: str, rec: dict | None) -> bool:
        if rec is None or rec.get("deleted"):
            return self.index.remove(gid) is not None
        current = self.index.get(gid)
        if current is not None and rec["version"] < current.version:
            return False
        self.index.upsert(fence_from_record(rec, self.geo.hysteresis_m))
        return True

    def on_side_input(self, batch: Batch, changed: set[str]) -> None:
        """Restored entities are checked against every fence (a crash may have come between a
        fence edit and its events); on an edit, every local entity against the edited fences."""
        restored, self.pending_reconcile = self.pending_reconcile, set()
        if restored:
            self._reconcile(batch, restored, None)
        if changed:
            self.stats.fence_changes += len(changed)
            self._reconcile(batch, set(self.partition_of), changed)

    def _reconcile(self, batch: Batch, entities: set[str], only: set[str] | None) -> None:
        states = [s for s in (self.state(e) for e in sorted(entities)) if s and s.last]
        zones = self.index.zones([s.last.lon for s in states], [s.last.lat for s in states])
        ts = now_ms()
        for state, z in zip(states, zones):
            out = self.machine.reconcile(state, z, ts, only)
            if out:
                self._emit(batch, out, ts)
                self.mark_dirty(batch, state.entity_id, state)

    # -- location updates ---------------------------------------------------------------------
    def process(self, msgs: list, batch: Batch) -> None:
        decoded = []
        for msg in msgs:
            try:
                rec = self.codec.decode(msg.value(), "LocationUpdate")
                decoded.append((msg, rec, update_from_record(rec)))
            except ValidationError as exc:
                self.stats.dead_lettered += 1
                self._tally(batch, "dlq", "validation")
                self.dead_letter(batch, self.t_dlq, msg, "validation", str(exc))
        zones = self.index.zones([u.lon for _, _, u in decoded], [u.lat for _, _, u in decoded])
        for (msg, rec, upd), z in zip(decoded, zones):
            self.stats.updates += 1
            batch.tally["updates"] = batch.tally.get("updates", 0) + 1
            if rec.get("produced_ms"):
                batch.tally.setdefault("produced_ms", []).append(rec["produced_ms"])
            state = self.state(upd.entity_id)
            if state is None:
                state = EntityState(upd.entity_id, upd.tenant_id)
                self.put_state(msg.partition(), upd.entity_id, state)
            outcome = self.machine.apply(state, upd, z)
            if outcome.kind == "duplicate":
                self.stats.duplicates += 1
            elif outcome.rejected:
                self.stats.dead_lettered += 1
                self._tally(batch, "dlq", outcome.kind)
                self.dead_letter(batch, self.t_dlq, msg, outcome.kind, outcome.reason)
            else:
                self.mark_dirty(batch, upd.entity_id, state)
                self._emit(batch, outcome.transitions, rec.get("produced_ms"))
            reply_to = (rec.get("attributes") or {}).get(REPLY_ATTRIBUTE)
            if reply_to:
                self._reply(batch, reply_to, upd, state, outcome)

    def _emit(self, batch: Batch, transitions, produced_ms: int | None) -> None:
        for t in transitions:
            self.emit(batch, self.t_events, t.geofence_id, "GeofenceEvent",
                      event_record(t, produced_ms))
            self.stats.events += 1
            self._tally(batch, "events", t.event_type)
            if t.event_type == "ENTER":
                self._schedule_dwell(t.entity_id, self.state(t.entity_id))

    @staticmethod
    def _tally(batch: Batch, what: str, label: str) -> None:
        counts = batch.tally.setdefault(what, {})
        counts[label] = counts.get(label, 0) + 1

    def on_committed(self, batch: Batch) -> None:
        if not batch.tally:
            return
        now = now_ms()
        self.sensor.committed(batch.tally.get("updates", 0), batch.tally.get("events", {}),
                              batch.tally.get("dlq", {}),
                              [max(0, now - p) / 1000 for p in batch.tally.get("produced_ms", ())],
                              time.monotonic() - batch.started)

    def _reply(self, batch: Batch, request_id: str, upd, state: EntityState, outcome) -> None:
        rec = {"request_id": request_id, "entity_id": upd.entity_id, "ts_ms": upd.ts_ms,
               "outcome": outcome.kind, "reason": outcome.reason,
               "inside": sorted(state.memberships),
               "events": [{"event_id": t.event_id, "event_type": t.event_type,
                           "geofence_id": t.geofence_id, "geofence_version": t.geofence_version,
                           "ts_ms": t.ts_ms} for t in outcome.transitions]}
        self.emit(batch, self.t_eval, request_id, "EvaluationResult", rec)

    # -- dwell timers -------------------------------------------------------------------------
    def _schedule_dwell(self, entity: str, state: EntityState | None) -> None:
        due = self.machine.next_dwell_due(state) if state else None
        if due is not None:
            heapq.heappush(self.dwell_heap, (due, entity))

    def tick(self, batch: Batch) -> None:
        now = now_ms()
        while self.dwell_heap and self.dwell_heap[0][0] <= now:
            _, entity = heapq.heappop(self.dwell_heap)
            state = self.state(entity)
            if state is None:
                continue  # moved to another instance, which restored its own timer
            out = self.machine.due_dwells(state, now)
            if out:
                self._emit(batch, out, now)
                self.mark_dirty(batch, entity, state)


def run_evaluator(kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                  instance_id: str, sensor: EvaluatorSensor | None = None) -> None:
    ev = Evaluator(kafka, geo, codec, instance_id, sensor)
    signal.signal(signal.SIGTERM, ev.stop)
    signal.signal(signal.SIGINT, ev.stop)
    ev.run()
    log.info("evaluator stopped", transactions=ev.transactions, aborted=ev.aborted,
             **ev.stats.__dict__)
