"""The CEP stages, on `TransactionalProcessor` (state, matches and offsets commit together,
so a worker killed mid-window resumes with the same partial matches).

    geo.geofence-events ─ CepRekey ─ geo.cep-input (by entity) ─┐
    geo.locations ──────────────────────────────────────────────┴ CepProcessor(entity) ─┐
    geo.geofence-events ─────────────────────────────────────── CepProcessor(geofence) ─┴ geo.cep-matches

Patterns (`geo.cep-patterns`) are a side input: an edit or a new pattern applies without a
restart; a new version of a pattern starts from empty state. An event that arrives later than
a pattern's allowed lateness goes to `geo.cep.dlq` (class `late`) with the patterns it missed.
"""

from __future__ import annotations

import json
import time

import structlog

from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.alignment import releasable
from streams.cep.operators import Aggregate, concerns, feed, needs_locations, needs_ticks, on_location, on_tick
from streams.cep.patterns import Pattern, parse_pattern
from geoflux.keys import scoped
from streams.sensor import StageSensor
from streams.txn_processor import Batch, ConfigSideInput, Record, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.cep")


class CepRekey(TransactionalProcessor):
    """Geofence events keyed by geofence -> the same events keyed by entity, written in merged
    event-time order across the input partitions (`streams.cep.alignment`)."""

    ALIGN_MS = 1_000
    MAX_STALL_S = 5.0
    MAX_HELD, RESUME_BELOW = 20_000, 5_000  # per partition: pause its fetching while this far ahead

    stage = "cep-rekey"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0",
                 sensor: StageSensor | None = None) -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-cep-rekey",
                         instance_id=instance_id, inputs={topic("geo.geofence-events", kafka): "GeofenceEvent"},
                         dlq_topic=topic("geo.cep.dlq", kafka), sensor=sensor)
        self.t_in, self.t_out = topic("geo.geofence-events", kafka), topic("geo.cep-input", kafka)
        self.held: dict[int, list[tuple[int, int, str, bytes]]] = {}  # -> (ts, offset, entity, value)
        self.seen: dict[int, int] = {}
        self.moved_at: dict[int, float] = {}
        self.paused: set[int] = set()

    def on_restored(self, partition: int) -> None:
        # (re)assigned: reading restarts at the committed offset, the first record not yet written
        self.held.pop(partition, None)
        self.seen.pop(partition, None)
        self.moved_at[partition] = time.monotonic()
        self.paused.discard(partition)

    def on_rewind(self) -> None:
        # an aborted transaction: reading restarts at the committed offsets, so nothing is held
        for partition in list(self.held):
            self.on_restored(partition)
        if self.paused:
            assigned = {tp.partition: tp for tp in self.consumer.assignment()}
            self.consumer.resume([assigned[p] for p in self.paused if p in assigned])
            self.paused.clear()

    def process(self, records: list[Record], batch: Batch) -> None:
        now = time.monotonic()
        for r in records:
            ev = r.rec
            p = r.partition()
            # keyed by tenant/entity, co-partitioned with geo.locations (entity ids are per tenant)
            self.held.setdefault(p, []).append((ev["ts_ms"], r.offset(), scoped(ev["tenant_id"], ev["entity_id"]),
                                                r.raw()))
            if ev["ts_ms"] > self.seen.get(p, -1):
                self.seen[p], self.moved_at[p] = ev["ts_ms"], now
        self._write(batch)

    def wants_tick(self) -> bool:
        return any(self.held.values())  # the last held records go out once nothing else comes

    def tick(self, batch: Batch) -> None:
        self._write(batch)

    def _write(self, batch: Batch) -> None:
        assigned = {tp.partition: tp for tp in self.consumer.assignment()}
        for p in [p for p in self.held if p not in assigned]:
            del self.held[p]  # revoked: its new owner re-reads from the committed offset
        backlog = set()
        for tp in self.consumer.position(list(assigned.values())):
            _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and hi > tp.offset + 1:  # more than a transaction marker unread
                backlog.add(tp.partition)
        counts = releasable({p: [h[0] for h in held] for p, held in self.held.items()}, self.seen,
                            backlog, set(assigned), self.moved_at, time.monotonic(), self.ALIGN_MS,
                            self.MAX_STALL_S)
        out = []
        for p, n in counts.items():
            written, rest = self.held[p][:n], self.held[p][n:]
            self.held[p] = rest
            out += written
            if rest:  # never commit past a held record: a crash re-reads it
                batch.offsets[(self.t_in, p)] = rest[0][1]
            elif written:
                batch.offsets[(self.t_in, p)] = written[-1][1] + 1
        for _ts, _offset, entity, value in sorted(out, key=lambda h: h[0]):  # stable: ties keep order
            self.produce(batch, self.t_out, entity, value)
        self._flow(assigned)

    def _flow(self, assigned: dict) -> None:
        pause = {p for p, h in self.held.items() if len(h) > self.MAX_HELD and p not in self.paused}
        resume = {p for p in self.paused if len(self.held.get(p, [])) < self.RESUME_BELOW}
        if pause:
            self.consumer.pause([assigned[p] for p in pause if p in assigned])
        if resume:
            self.consumer.resume([assigned[p] for p in resume if p in assigned])
        self.paused = (self.paused | pause) - resume


class CepProcessor(TransactionalProcessor):
    changelog_schema = "CepState"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, mode: str, instance_id: str = "0",
                 tick_interval_s: float = 0.5, sensor: StageSensor | None = None) -> None:
        self.mode = mode
        self.stage = f"cep-{mode}"
        self.t_events = topic("geo.cep-input" if mode == "entity" else "geo.geofence-events", kafka)
        self.t_locations = topic("geo.locations", kafka)
        inputs = {self.t_events: "GeofenceEvent"}
        if mode == "entity":
            inputs[self.t_locations] = "LocationUpdate"
        super().__init__(kafka, codec, group=kafka.topic_prefix + f"geoflux-cep-{mode}",
                         instance_id=instance_id, inputs=inputs, tick_interval_s=tick_interval_s,
                         dlq_topic=topic("geo.cep.dlq", kafka), sensor=sensor)
        self.changelog_topic = topic("geo.cep-state" if mode == "entity" else "geo.cep-geofence-state", kafka)
        self.t_matches = topic("geo.cep-matches", kafka)
        self.t_aggregates = topic("geo.cep-aggregates", kafka)
        self.t_dlq = topic("geo.cep.dlq", kafka)
        self.patterns: dict[str, Pattern] = {}
        self.partition_clock: dict[tuple[str, int], tuple[int, int]] = {}  # -> (event ts, seen at)
        self.side_inputs.append(ConfigSideInput(
            kafka, topic("geo.cep-patterns", kafka), codec, self.patterns,
            lambda body, pid, rec: parse_pattern(body, pid, rec["version"]),
            keep=lambda p: p.keyed_by == self.mode))

    def state_from_record(self, rec: dict) -> dict:
        return {"tenant": rec["tenant_id"], "key": rec["key"], "p": json.loads(rec["patterns"])}

    def state_to_record(self, st: dict) -> dict:
        return {"key": st["key"], "tenant_id": st["tenant"], "patterns": json.dumps(st["p"])}

    @staticmethod
    def _compact(st: dict) -> None:
        """Drops empty operator state, so a key's changelog record only carries the patterns
        that are mid-match for it (an entity untouched by most patterns stays small)."""
        for pid in list(st["p"]):
            s = st["p"][pid]["s"]
            for k in [k for k, v in s.items() if v in ([], {}, None)]:
                del s[k]
            if not s:
                del st["p"][pid]

    def _pattern(self, tenant: str, pattern_id: str) -> Pattern | None:
        return self.patterns.get(scoped(tenant, pattern_id))

    def _pattern_state(self, st: dict, p: Pattern) -> dict:
        entry = st["p"].get(p.pattern_id)
        if entry is None or entry["v"] != p.version:
            entry = st["p"][p.pattern_id] = {"v": p.version, "s": {}}
        return entry["s"]

    def _key_state(self, partition: int, key: str, tenant: str) -> dict:
        """State under tenant/key; `st["key"]` keeps the bare id the matches are reported by."""
        st = self.state(scoped(tenant, key), partition)
        if st is None:
            st = {"tenant": tenant, "key": key, "p": {}}
            self.put_state(partition, scoped(tenant, key), st)
        return st

    def _emit(self, batch: Batch, outputs, tenant: str) -> None:
        for out in outputs:
            if isinstance(out, Aggregate):
                self.emit(batch, self.t_aggregates, out.key, "CepAggregate", out.record(tenant))
            else:
                self.emit(batch, self.t_matches, out.key, "CepMatch", out.record(tenant))

    def _clock(self, msg, ts: int, wall: int) -> None:
        part = (msg.topic(), msg.partition())
        prev = self.partition_clock.get(part, (ts, wall))[0]
        self.partition_clock[part] = (max(prev, ts), wall)

    def process(self, records: list[Record], batch: Batch) -> None:
        wall = now_ms()
        for msg in records:
            if msg.topic() == self.t_locations:
                loc = msg.rec
                tenant = loc.get("tenant_id") or "default"
                self._clock(msg, loc["ts_ms"], wall)
                tracking = [p for p in self.patterns.values()
                            if needs_locations(p) and p.tenant_id == tenant]
                if tracking:
                    st = self._key_state(msg.partition(), loc["entity_id"], tenant)
                    for p in tracking:
                        on_location(p, self._pattern_state(st, p), loc["ts_ms"])
                    self.mark_dirty(batch, scoped(tenant, loc["entity_id"]), st)
                continue
            ev = msg.rec
            self._clock(msg, ev["ts_ms"], wall)
            key = ev["entity_id"] if self.mode == "entity" else ev["geofence_id"]
            mine = [p for p in self.patterns.values() if p.tenant_id == ev["tenant_id"]]
            if not mine:
                continue
            st = self._key_state(msg.partition(), key, ev["tenant_id"])
            missed = []
            for p in mine:
                if p.pattern_id not in st["p"] and not concerns(p, ev):
                    continue  # nothing in flight for this key, and nothing this event could start
                outputs, late = feed(p, self._pattern_state(st, p), ev, key)
                self._emit(batch, outputs, ev["tenant_id"])
                if late:
                    missed.append(f"{p.pattern_id} (lateness {p.lateness_ms} ms)")
            if missed:
                self.dead_letter(batch, self.t_dlq, msg, "late",
                                 f"event {ev['event_id']} at {ev['ts_ms']} arrived after the watermark of "
                                 f"{key} for: {', '.join(missed)}")
            self._compact(st)
            self.mark_dirty(batch, scoped(ev["tenant_id"], key), st)

    def wants_tick(self) -> bool:
        return any(needs_ticks(p) for p in self.patterns.values())

    IDLE_MS = 5_000  # an input partition with no record for this long no longer holds the clock

    def input_clock(self, wall_ms: int) -> int:
        """The event time every busy input partition has reached (the slowest one's newest
        record); the wall clock when all are idle. Timers run on this clock, so draining a
        backlog (upstream or here) never fires one ahead of the events that decide it."""
        busy = [ts for ts, seen in self.partition_clock.values() if wall_ms - seen < self.IDLE_MS]
        return min(busy) if busy else wall_ms

    def tick(self, batch: Batch) -> None:
        now = self.input_clock(now_ms())
        for partition in sorted(self.ready):
            for skey, st in list(self.states(partition)):
                fired = []
                for pid in list(st["p"]):  # only the patterns mid-match for this key
                    p = self._pattern(st["tenant"], pid)
                    if p is not None and needs_ticks(p):
                        fired += on_tick(p, self._pattern_state(st, p), now, st["key"])
                if fired:
                    self._emit(batch, fired, st["tenant"])
                    self._compact(st)
                    self.mark_dirty(batch, skey, st, partition)
