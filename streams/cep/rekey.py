"""The CEP re-key: geofence events keyed by geofence -> the same events keyed by
tenant/entity on `geo.cep-input`, in merged event-time order (`streams.cep.alignment`), so the
entity-keyed stage sees an entity's events from every geofence partition in order."""

from __future__ import annotations

import time
from collections import deque

from geoflux.keys import scoped
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.alignment import frontier, releasable, settled
from streams.runtime.sensor import StageSensor
from streams.runtime.txn_processor import Txn, Record, TransactionalProcessor

MAX_BATCH = 5_000  # records per transaction: fewer commits, and more of a key's events per changelog write


class CepRekeyStage(TransactionalProcessor):
    """Geofence events keyed by geofence -> the same events keyed by tenant/entity, written in
    merged event-time order across the input partitions (`streams.cep.alignment`)."""

    ALIGN_MS = 1_000
    MAX_STALL_S = 5.0
    SETTLE_S = 0.5  # a record ahead of a caught-up partition waits this long for it (alignment)
    MAX_HELD, RESUME_BELOW = 20_000, 5_000  # per partition: pause its fetching while this far ahead

    stage = "cep-rekey"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0",
                 sensor: StageSensor | None = None) -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-cep-rekey",
                         instance_id=instance_id, inputs={topic("geo.geofence-events", kafka): "GeofenceEvent"},
                         dlq_topic=topic("geo.cep.dlq", kafka), max_batch=MAX_BATCH, sensor=sensor)
        self.t_in, self.t_out = topic("geo.geofence-events", kafka), topic("geo.cep-input", kafka)
        self.held: dict[int, deque] = {}  # partition -> (ts, read at, offset, key, value), offset order
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

    def process(self, records: list[Record], txn: Txn) -> None:
        now = time.monotonic()
        for msg in records:
            ev = msg.rec
            p = msg.partition()
            # keyed from the record's own fields (never msg.key()): an entity id is unique only
            # within its tenant, and geo.locations is keyed the same way (co-partitioned)
            key = scoped(ev["tenant_id"], ev["entity_id"])
            held = self.held.get(p)
            if held is None:
                held = self.held[p] = deque()
            held.append((ev["ts_ms"], now, msg.offset(), key, msg.raw()))
            if ev["ts_ms"] > self.seen.get(p, -1):
                self.seen[p], self.moved_at[p] = ev["ts_ms"], now
        self._write(txn)

    def wants_tick(self) -> bool:
        return any(self.held.values())  # the last held records go out once nothing else comes

    def tick(self, txn: Txn) -> None:
        self._write(txn)

    def _write(self, txn: Txn) -> None:
        assigned = {tp.partition: tp for tp in self.consumer.assignment()}
        for p in [p for p in self.held if p not in assigned]:
            del self.held[p]  # revoked: its new owner re-reads from the committed offset
        backlog = {p for t, p in self.unread(list(assigned.values())) if t == self.t_in}
        now = time.monotonic()
        upto = frontier(self.seen, backlog, {p for p, h in self.held.items() if h}, set(assigned),
                        self.moved_at, now, self.ALIGN_MS, self.MAX_STALL_S)
        settled_ms = settled(self.seen, set(assigned), self.ALIGN_MS)
        out = []
        for p, held in self.held.items():
            n = releasable((h[:2] for h in held), upto, settled_ms, now - self.SETTLE_S)
            written = [held.popleft() for _ in range(n)]
            out += written
            if held:  # never commit past a held record: a crash re-reads it
                txn.offsets[(self.t_in, p)] = held[0][2]
            elif written:
                txn.offsets[(self.t_in, p)] = written[-1][2] + 1
        for _ts, _read_at, _offset, key, value in sorted(out, key=lambda h: h[0]):  # stable: ties keep order
            self.produce(txn, self.t_out, key, value)
        self._flow(assigned)

    def _flow(self, assigned: dict) -> None:
        pause = {p for p, h in self.held.items() if len(h) > self.MAX_HELD and p not in self.paused}
        resume = {p for p in self.paused if len(self.held.get(p, ())) < self.RESUME_BELOW}
        if pause:
            self.consumer.pause([assigned[p] for p in pause if p in assigned])
        if resume:
            self.consumer.resume([assigned[p] for p in resume if p in assigned])
        self.paused = (self.paused | pause) - resume
