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

from geoflux.keys import scoped, unscoped
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.alignment import releasable
from streams.cep.operators import Aggregate, concerns, feed, needs_locations, needs_ticks, on_location, on_tick
from streams.cep.patterns import Pattern, parse_pattern
from streams.txn_processor import Batch, ConfigSideInput, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.cep")


class CepRekey(TransactionalProcessor):
    """Geofence events keyed by geofence -> the same events keyed by entity, written in merged
    event-time order across the input partitions (`streams.cep.alignment`)."""

    ALIGN_MS = 1_000
    MAX_STALL_S = 5.0
    MAX_HELD, RESUME_BELOW = 20_000, 5_000  # per partition: pause its fetching while this far ahead

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0") -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-cep-rekey",
                         instance_id=instance_id, inputs=[topic("geo.geofence-events", kafka)])
        self.t_in, self.t_out = topic("geo.geofence-events", kafka), topic("geo.cep-input", kafka)
        self.held: dict[int, list[tuple[int, int, str, bytes]]] = {}  # -> (ts, offset, entity, value)
        self.seen: dict[int, int] = {}
        self.moved_at: dict[int, float] = {}
        self.paused: set[int] = set()

    def on_restored(self, partition: int, _states: dict) -> None:
        # (re)assigned, or rewound after an aborted transaction: reading restarts at the
        # committed offset, which is the first record not yet written
        self.held.pop(partition, None)
        self.seen.pop(partition, None)
        self.moved_at[partition] = time.monotonic()
        self.paused.discard(partition)

    def _decode(self, msg) -> dict:
        return self.codec.decode(msg.value(), "GeofenceEvent")

    def process(self, msgs: list, batch: Batch) -> None:
        now = time.monotonic()
        for msg in msgs:
            ev = self._decode(msg)
            p = msg.partition()
            # keyed from the record's own fields (never msg.key()): an entity id is unique only
            # within its tenant, and geo.locations is keyed the same way (co-partitioned)
            key = scoped(ev["tenant_id"], ev["entity_id"])
            self.held.setdefault(p, []).append((ev["ts_ms"], msg.offset(), key, msg.value()))
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
                 tick_interval_s: float = 0.5) -> None:
        self.mode = mode
        self.t_events = topic("geo.cep-input" if mode == "entity" else "geo.geofence-events", kafka)
        self.t_locations = topic("geo.locations", kafka)
        inputs = [self.t_events, self.t_locations] if mode == "entity" else [self.t_events]
        super().__init__(kafka, codec, group=kafka.topic_prefix + f"geoflux-cep-{mode}",
                         instance_id=instance_id, inputs=inputs, tick_interval_s=tick_interval_s)
        self.changelog_topic = topic("geo.cep-state" if mode == "entity" else "geo.cep-geofence-state", kafka)
        self.t_matches = topic("geo.cep-matches", kafka)
        self.t_aggregates = topic("geo.cep-aggregates", kafka)
        self.t_dlq = topic("geo.cep.dlq", kafka)
        self.patterns: dict[str, Pattern] = {}  # side-input key (opaque) -> pattern
        self._by_tenant: dict[str, list[Pattern]] = {}
        self._by_id: dict[tuple[str, str], Pattern] = {}
        self._indexed: dict[str, Pattern] | None = None
        self.partition_clock: dict[tuple[str, int], tuple[int, int]] = {}  # -> (event ts, seen at)
        self.side_inputs.append(ConfigSideInput(
            kafka, topic("geo.cep-patterns", kafka), codec, self.patterns,
            lambda body, _key, rec: parse_pattern(body, None, rec["version"]),
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

    def _pattern_state(self, st: dict, p: Pattern) -> dict:
        entry = st["p"].get(p.pattern_id)
        if entry is None or entry["v"] != p.version:
            entry = st["p"][p.pattern_id] = {"v": p.version, "s": {}}
        return entry["s"]

    def _index(self) -> None:
        """Patterns by (tenant, pattern_id) and by tenant: a pattern only sees its own tenant's
        events, and a pattern id is unique only within its tenant."""
        if self._indexed == self.patterns:
            return
        self._indexed = dict(self.patterns)
        self._by_id = {(p.tenant_id, p.pattern_id): p for p in self.patterns.values()}
        self._by_tenant = {}
        for p in self._by_id.values():
            self._by_tenant.setdefault(p.tenant_id, []).append(p)

    def _key_state(self, partition: int, key: str, tenant: str) -> dict:
        st = self.state(key)
        if st is None:
            st = {"tenant": tenant, "key": key, "p": {}}
            self.put_state(partition, key, st)
        return st

    def _emit(self, batch: Batch, outputs, tenant: str) -> None:
        for out in outputs:
            if isinstance(out, Aggregate):
                self.emit(batch, self.t_aggregates, out.key, "CepAggregate", out.record(tenant))
            else:
                self.emit(batch, self.t_matches, scoped(tenant, out.key), "CepMatch", out.record(tenant))

    def _clock(self, msg, ts: int, wall: int) -> None:
        part = (msg.topic(), msg.partition())
        prev = self.partition_clock.get(part, (ts, wall))[0]
        self.partition_clock[part] = (max(prev, ts), wall)

    def _decode(self, msg) -> dict:
        """The one place a stage input is decoded (the shell may hand over decoded values)."""
        schema = "LocationUpdate" if msg.topic() == self.t_locations else "GeofenceEvent"
        return self.codec.decode(msg.value(), schema)

    def process(self, msgs: list, batch: Batch) -> None:
        wall = now_ms()
        self._index()
        for msg in msgs:
            rec = self._decode(msg)
            self._clock(msg, rec["ts_ms"], wall)
            mine = self._by_tenant.get(rec["tenant_id"], ())
            if msg.topic() == self.t_locations:
                tracking = [p for p in mine if needs_locations(p)]
                if tracking:
                    key = scoped(rec["tenant_id"], rec["entity_id"])
                    st = self._key_state(msg.partition(), key, rec["tenant_id"])
                    for p in tracking:
                        on_location(p, self._pattern_state(st, p), rec["ts_ms"])
                    self.mark_dirty(batch, key, st)
                continue
            ev = rec
            subject = ev["entity_id"] if self.mode == "entity" else ev["geofence_id"]
            key = scoped(ev["tenant_id"], subject)
            if not mine:
                continue
            st = self._key_state(msg.partition(), key, ev["tenant_id"])
            missed = []
            for p in mine:
                if p.pattern_id not in st["p"] and not concerns(p, ev):
                    continue  # nothing in flight for this key, and nothing this event could start
                outputs, late = feed(p, self._pattern_state(st, p), ev, subject)
                self._emit(batch, outputs, ev["tenant_id"])
                if late:
                    missed.append(f"{p.pattern_id} (lateness {p.lateness_ms} ms)")
            if missed:
                self.dead_letter(batch, self.t_dlq, msg, "late",
                                 f"event {ev['event_id']} at {ev['ts_ms']} arrived after the watermark of "
                                 f"{key} for: {', '.join(missed)}")
            self._compact(st)
            self.mark_dirty(batch, key, st)

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
        self._index()
        for states in self.states.values():
            for key, st in states.items():
                fired = []
                subject = unscoped(st["key"])[1]
                for pid in list(st["p"]):  # only the patterns mid-match for this key
                    p = self._by_id.get((st["tenant"], pid))
                    if p is not None and needs_ticks(p):
                        fired += on_tick(p, self._pattern_state(st, p), now, subject)
                if fired:
                    self._emit(batch, fired, st["tenant"])
                    self._compact(st)
                    self.mark_dirty(batch, key, st)
