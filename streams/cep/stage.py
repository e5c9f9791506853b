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
from streams.cep.alignment import align
from streams.cep.operators import Aggregate, concerns, feed, needs_locations, needs_ticks, on_location, on_tick
from streams.cep.patterns import Pattern, parse_pattern
from streams.txn_processor import Batch, ConfigSideInput, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.cep")


class CepRekey(TransactionalProcessor):
    """Geofence events keyed by geofence -> the same events keyed by entity, with the input
    partitions kept within ALIGN_MS of each other in event time (`streams.cep.alignment`)."""

    ALIGN_MS = 1_000
    MAX_STALL_S = 5.0
    # small fetches and a small local queue, so partitions interleave in small chunks and a
    # pause takes effect at once instead of after a large prefetch
    consumer_overrides = {"max.partition.fetch.bytes": 16_384, "queued.max.messages.kbytes": 1024,
                          "queued.min.messages": 200}

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0") -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-cep-rekey",
                         instance_id=instance_id, inputs=[topic("geo.geofence-events", kafka)])
        self.t_out = topic("geo.cep-input", kafka)
        self.last_ts: dict[int, int] = {}
        self.moved_at: dict[int, float] = {}
        self.paused: set[int] = set()

    def process(self, msgs: list, batch: Batch) -> None:
        now = time.monotonic()
        for msg in msgs:
            ev = self.codec.decode(msg.value(), "GeofenceEvent")
            if ev["ts_ms"] > self.last_ts.get(msg.partition(), -1):
                self.last_ts[msg.partition()], self.moved_at[msg.partition()] = ev["ts_ms"], now
            self.produce(batch, self.t_out, ev["entity_id"], msg.value())
        self._align()

    def wants_tick(self) -> bool:
        return bool(self.paused)  # a paused partition must be resumed even if nothing else arrives

    def tick(self, batch: Batch) -> None:
        self._align()

    def _align(self) -> None:
        assigned = {tp.partition: tp for tp in self.consumer.assignment()}
        busy = {}
        for tp in self.consumer.position(list(assigned.values())):
            _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and hi > tp.offset + 1 and tp.partition in self.last_ts:
                busy[tp.partition] = self.last_ts[tp.partition]  # more than a marker left
        pause, resume = align(busy, self.paused & set(assigned), self.moved_at, time.monotonic(),
                              self.ALIGN_MS, self.MAX_STALL_S)
        if pause:
            self.consumer.pause([assigned[p] for p in pause])
        if resume:
            self.consumer.resume([assigned[p] for p in resume])
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
        self.patterns: dict[str, Pattern] = {}
        self.last_record_at: dict[tuple[str, int], float] = {}
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

    def _pattern_state(self, st: dict, p: Pattern) -> dict:
        entry = st["p"].get(p.pattern_id)
        if entry is None or entry["v"] != p.version:
            entry = st["p"][p.pattern_id] = {"v": p.version, "s": {}}
        return entry["s"]

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
                self.emit(batch, self.t_matches, out.key, "CepMatch", out.record(tenant))

    def process(self, msgs: list, batch: Batch) -> None:
        arrived = time.monotonic()
        for msg in msgs:
            self.last_record_at[(msg.topic(), msg.partition())] = arrived
            if msg.topic() == self.t_locations:
                loc = self.codec.decode(msg.value(), "LocationUpdate")
                tracking = [p for p in self.patterns.values()
                            if needs_locations(p) and p.tenant_id == loc["tenant_id"]]
                if tracking:
                    st = self._key_state(msg.partition(), loc["entity_id"], loc["tenant_id"])
                    for p in tracking:
                        on_location(p, self._pattern_state(st, p), loc["ts_ms"])
                    self.mark_dirty(batch, loc["entity_id"], st)
                continue
            ev = self.codec.decode(msg.value(), "GeofenceEvent")
            key = ev["entity_id"] if self.mode == "entity" else ev["geofence_id"]
            mine = [p for p in self.patterns.values() if p.tenant_id == ev["tenant_id"]]
            if not mine:
                continue
            st = self._key_state(msg.partition(), key, ev["tenant_id"])
            now, missed = now_ms(), []
            for p in mine:
                if p.pattern_id not in st["p"] and not concerns(p, ev):
                    continue  # nothing in flight for this key, and nothing this event could start
                outputs, late = feed(p, self._pattern_state(st, p), ev, key, now)
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

    def _caught_up(self) -> bool:
        """No input backlog: wall-clock timers (quiet keys, absences, track gaps) only fire
        then. Draining a backlog, event time is far behind the wall clock and every timer would
        fire at once, ahead of the events that decide it. A partition that has been silent for
        a while counts as caught up (what is left of its lag is transaction markers)."""
        now = time.monotonic()
        for tp in self.consumer.position(self.consumer.assignment()):
            _lo, hi = self.consumer.get_watermark_offsets(tp, cached=True)
            silent = now - self.last_record_at.get((tp.topic, tp.partition), 0.0) > 2.0
            if tp.offset >= 0 and hi > tp.offset + 1 and not silent:
                return False
        return True

    def tick(self, batch: Batch) -> None:
        if not self._caught_up():
            return
        now = now_ms()
        for states in self.states.values():
            for key, st in states.items():
                fired = []
                for pid in list(st["p"]):  # only the patterns mid-match for this key
                    p = self.patterns.get(pid)
                    if p is not None and needs_ticks(p) and p.tenant_id == st["tenant"]:
                        fired += on_tick(p, self._pattern_state(st, p), now, key)
                if fired:
                    self._emit(batch, fired, st["tenant"])
                    self._compact(st)
                    self.mark_dirty(batch, key, st)
