"""The CEP stages, on `TransactionalProcessor` (state, matches and offsets commit together,
so a worker killed mid-window resumes with the same partial matches).

    geo.geofence-events ─ CepRekeyStage ─ geo.cep-input (by tenant/entity) ─┐
    geo.locations (by tenant/entity) ──────────────────────────────────┴ CepStage(entity) ─┐
    geo.geofence-events ────────────────────────────────────────────── CepStage(geofence) ─┴ geo.cep-matches

Patterns (`geo.cep-patterns`) are a side input: an edit or a new pattern applies without a
restart (what an edit keeps: `streams/cep/patterns.py`). State is keyed by tenant/entity or
tenant/geofence. An event that arrives later than a pattern's allowed lateness goes to
`geo.cep.dlq` (class `late`) with the patterns it missed. Open aggregate windows are
published at most once a second (the latest counts), and not while the stage drains a backlog
(its input clock more than 5 s behind the wall clock); closing always publishes at once.
"""

from __future__ import annotations

import time

import structlog

from geoflux.errors import ValidationError
from geoflux.keys import scoped, unscoped
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.engine import Engine
from streams.cep.index import PatternSet, PatternTable
from streams.cep.keystate import FORMAT, KeyState
from streams.cep.outputs import Aggregate, AggregateGone, Match
from streams.cep.patterns import parse_pattern
from streams.cep.rekey import MAX_BATCH, CepRekeyStage  # noqa: F401  (the CLI starts every CEP stage from here)
from streams.runtime.sensor import StageSensor
from streams.state.timers import TIMERS, due_keys, timer_entry
from streams.runtime.txn_processor import Txn, ConfigSideInput, Record, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.cep")


class CepStage(TransactionalProcessor):
    changelog_schema = "CepState"
    IDLE_MS = 5_000  # an input partition with no record for this long no longer holds the clock
    AGGREGATE_EVERY_S = 1.0  # open windows' updates are published at most this often

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, mode: str, instance_id: str = "0",
                 tick_interval_s: float = 0.2, sensor: StageSensor | None = None) -> None:
        self.mode = mode
        self.stage = f"cep-{mode}"
        self.t_events = topic("geo.cep-input" if mode == "entity" else "geo.geofence-events", kafka)
        self.t_locations = topic("geo.locations", kafka)
        inputs = {self.t_events: "GeofenceEvent"}
        if mode == "entity":
            inputs[self.t_locations] = "LocationUpdate"
        super().__init__(kafka, codec, group=kafka.topic_prefix + f"geoflux-cep-{mode}",
                         instance_id=instance_id, inputs=inputs, tick_interval_s=tick_interval_s,
                         dlq_topic=topic("geo.cep.dlq", kafka), max_batch=MAX_BATCH, sensor=sensor)
        self.changelog_topic = topic("geo.cep-state" if mode == "entity" else "geo.cep-geofence-state", kafka)
        self.t_matches = topic("geo.cep-matches", kafka)
        self.t_aggregates = topic("geo.cep-aggregates", kafka)
        self.t_dlq = topic("geo.cep.dlq", kafka)
        self.patterns = PatternSet()
        self._indexed_version = -1
        self.engine = Engine(PatternTable())
        self.to_publish: dict[str, int] = {}  # key -> partition: open aggregates changed since published
        self._published_at = 0.0
        self.partition_clock: dict[tuple[str, int], tuple[int, int]] = {}  # -> (event ts, seen at)
        self.assigned_at: dict[int, int] = {}
        self.side_inputs.append(ConfigSideInput(
            kafka, topic("geo.cep-patterns", kafka), codec, self.patterns,
            # the side-input key is opaque (it may be tenant-scoped): the id is the body's
            lambda body, _key, rec: parse_pattern(body, None, rec["version"]),
            keep=lambda p: p.keyed_by == self.mode))

    # -- state ---------------------------------------------------------------------------------
    def state_from_record(self, rec: dict) -> KeyState:
        try:
            tenant, subject = unscoped(rec["key"])
        except ValidationError:
            tenant, subject = rec["tenant_id"], rec["key"]
        if rec.get("format", 1) != FORMAT:
            # written before kinds were classes: its partial matches are not readable now
            log.warning("CEP state of an older format dropped", key=rec["key"])
            return KeyState(tenant, subject)
        return KeyState.from_json(tenant, subject, rec["patterns"])

    def state_to_record(self, ks: KeyState) -> dict:
        return {"key": scoped(ks.tenant, ks.subject), "tenant_id": ks.tenant, "patterns": ks.to_json(),
                "format": FORMAT}

    def index_keys(self, key: str, ks: KeyState):
        """A key's next timer is an entry of its partition's index, written with its state: a
        restart finds the timers in the restored store without reading every state. The due
        time is the one the patterns gave when the state was written; a pattern edited since
        is applied when the key next changes or its (possibly early) timer comes up."""
        self._refresh()
        due = self.engine.due(ks)
        return () if due is None else (timer_entry(due, key),)

    def on_restored(self, partition: int) -> None:
        self.assigned_at[partition] = now_ms()
        for t in self.inputs:
            self.partition_clock.pop((t, partition), None)
        self._refresh()

    def on_rewind(self) -> None:
        self.to_publish.clear()  # derived from work given up; timers live in the committed store

    def _refresh(self) -> None:
        if self.patterns.version != self._indexed_version:
            self._indexed_version = self.patterns.version
            self.engine = Engine(PatternTable(self.patterns.values()))

    def _changed(self, txn: Txn, key: str, partition: int, ks: KeyState) -> None:
        if ks.empty():
            self.delete_state(txn, key, partition)  # a tombstone: nothing in flight for this key
            return
        self.mark_dirty(txn, key, ks, partition)

    # -- inputs --------------------------------------------------------------------------------

    def _clock(self, msg, ts: int, wall: int) -> None:
        part = (msg.topic(), msg.partition())
        prev = self.partition_clock.get(part, (ts, wall))[0]
        self.partition_clock[part] = (max(prev, ts), wall)

    def process(self, records: list[Record], txn: Txn) -> None:
        wall = now_ms()
        self._refresh()
        table = self.engine.table
        touched: dict[str, int] = {}
        for msg in records:
            rec = msg.rec
            self._clock(msg, rec["ts_ms"], wall)
            tenant = rec["tenant_id"]
            partition = msg.partition()
            if msg.topic() == self.t_locations:
                if not table.locations(tenant):
                    continue
                subject = rec["entity_id"]
            else:
                subject = rec["entity_id"] if self.mode == "entity" else rec["geofence_id"]
            key = scoped(tenant, subject)
            ks = self.state(key, partition)
            created = ks is None
            if created:
                if msg.topic() != self.t_locations and not table.route(tenant, rec["event_type"], rec["geofence_id"]):
                    continue  # no pattern listens, and nothing is in flight for this key
                ks = KeyState(tenant, subject)
            if msg.topic() == self.t_locations:
                outputs, late = self.engine.on_location(ks, rec)
            else:
                outputs, late = self.engine.on_event(ks, rec)
            self._emit(txn, outputs)
            if late:
                what = "location" if msg.topic() == self.t_locations else f"event {rec['event_id']}"
                self.dead_letter(txn, self.t_dlq, msg, "late",
                                 f"{what} at {rec['ts_ms']} arrived after the watermark of {key} for: "
                                 + ", ".join(late))
            if created:
                if ks.empty():  # nothing started after all: never written, never stored
                    continue
                self.put_state(partition, key, ks)
            self._changed(txn, key, partition, ks)
            touched[key] = partition
            if table.publishing(tenant):
                self.to_publish[key] = partition
        self._tick_touched(txn, touched)

    def _tick_touched(self, txn: Txn, touched: dict[str, int]) -> None:
        """The timers of the keys this batch changed that the input clock, moved on by the
        batch, has already reached: fired now, as a tick right after the batch would, so each
        such key is written once in this transaction instead of once now and again at the next
        tick (draining a backlog, a batch spans more event time than the lateness: most of its
        events are released before it commits)."""
        now = self.input_clock(now_ms())
        if now is None:
            return
        for key, partition in touched.items():
            ks = self.state(key, partition)
            if ks is None:
                continue  # deleted in this transaction
            due = self.engine.due(ks)
            if due is not None and due <= now:
                self._emit(txn, self.engine.on_tick(ks, now))
                self._changed(txn, key, partition, ks)

    def _emit(self, txn: Txn, outputs) -> None:
        alike: dict[tuple, list[Aggregate]] | None = None
        for out in outputs:
            if type(out) is Aggregate:
                # one window's copies for the patterns sharing its state differ only in their
                # pattern id: encoded once (the closing of 20 identical patterns' windows was
                # a third of a geofence stage's CPU when each was encoded on its own)
                p = out.pattern
                alike = alike if alike is not None else {}
                alike.setdefault((id(out.window), out.geofence_id, out.closed, out.late, p.tenant_id, p.shape),
                                 []).append(out)
                continue
            if alike:
                self._emit_aggregates(txn, alike)
                alike = None
            if isinstance(out, Match):
                self.emit(txn, self.t_matches, scoped(out.pattern.tenant_id, out.key), "CepMatch", out.record())
            elif isinstance(out, AggregateGone):
                self.produce(txn, self.t_aggregates, out.key, None)
        if alike:
            self._emit_aggregates(txn, alike)

    def _emit_aggregates(self, txn: Txn, alike: dict[tuple, list[Aggregate]]) -> None:
        for group in alike.values():
            values = self.codec.encode_each(self.t_aggregates, "CepAggregate", group[0].record(),
                                            [o.pattern.pattern_id for o in group])
            for out, value in zip(group, values):
                self.produce(txn, self.t_aggregates, out.key, value)

    # -- timers --------------------------------------------------------------------------------
    def wants_tick(self) -> bool:
        return bool(self.to_publish) or any(
            next(iter(self.table(p).index(TIMERS)), None) is not None for p in self.ready)

    def input_clock(self, wall_ms: int) -> int | None:
        """The event time every busy input partition has reached (the slowest one's newest
        record); the wall clock when all are idle. Timers run on this clock, so draining a
        backlog (upstream or here) never fires one ahead of the events that decide it. A
        partition is busy while it has unread records, or has delivered a record (or been
        assigned) within IDLE_MS; a busy one that has delivered nothing yet — just assigned,
        after a restart — leaves the clock unknown (None: no timers until it has)."""
        assignment = self.consumer.assignment()
        backlog = self.unread(assignment)
        holds = []
        for tp in assignment:
            part = (tp.topic, tp.partition)
            ts, seen = self.partition_clock.get(part, (None, self.assigned_at.get(tp.partition, 0)))
            if part in backlog or wall_ms - seen < self.IDLE_MS:
                if ts is None:
                    return None
                holds.append(ts)
        return min(holds) if holds else wall_ms

    def tick(self, txn: Txn) -> None:
        now = self.input_clock(now_ms())
        if now is None:
            return
        self._refresh()
        for partition in sorted(self.ready):
            for key in due_keys(self.table(partition).index(TIMERS), now):
                ks = self.state(key, partition)
                if ks is None:
                    continue  # dropped in this transaction
                self._emit(txn, self.engine.on_tick(ks, now))
                self._changed(txn, key, partition, ks)
        draining = now_ms() - now > self.IDLE_MS  # the input clock far behind: counts would be stale at once
        if self.to_publish and not draining and time.monotonic() - self._published_at >= self.AGGREGATE_EVERY_S:
            # open windows, as they are now (a closed one was published when it closed, and
            # is no longer among them)
            self._published_at = time.monotonic()
            for key, partition in self.to_publish.items():
                ks = self.state(key, partition) if partition in self.ready else None
                if ks is not None:
                    self._emit(txn, self.engine.published(ks))
            self.to_publish.clear()
