"""Views of compacted topics kept in a local store in the API process: who is inside geofence G
now, which geofences entity E is in, and what is known of an entity (its attributes).

A `FollowedStore` reads its topic read_committed in a background thread and writes what it
derives from each batch together with the offsets it reflects, in one write, to a store on
disk (RocksDB by default), so RAM holds the store's caches rather than the data and a restarted
API reads only the topic's tail.

The membership view follows the evaluator's changelog (`geo.evaluator-state`), which is written
in the same transaction as the events: it never shows a membership whose ENTER is not on the
events topic, nor misses one whose ENTER is (it lags the events by the time it takes to read).

    e<tenant/entity>                JSON [[geofence_id, entered_ms], ...]
    m<tenant/geofence_id>\\0<entity>  entered_ms
    \\0pos<partition>                next offset reflected
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from connectors.kafka_config import consumer_config
from geoflux.errors import ValidationError
from geoflux.keys import scoped, unscoped
from geoflux.settings import KafkaSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.state import open_configured_store

log = structlog.get_logger("geoflux.views")
SEP = b"\x00"
POS = b"\x00pos"

Writes = list[tuple[bytes, bytes | None]]


class FollowedStore:
    logical = ""  # the catalogue topic a subclass follows

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, state: StreamSettings, name: str) -> None:
        self.kafka, self.codec = kafka, codec
        self.topic = topic(self.logical, kafka)
        path = Path(state.data_dir) / "api" / name / self.topic.replace("/", "_")
        self.store = open_configured_store(state, path)
        self.lock = threading.Lock()
        self.behind: int | None = None  # records left to the end seen at start; 0 caught up; -1 stopped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"view-{self.logical}", daemon=True)

    def start(self) -> "FollowedStore":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.store.close()

    def _writes(self, msgs: list) -> Writes:
        """What a batch of records changes in the store."""
        raise NotImplementedError

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self.kafka, f"view-{uuid.uuid4().hex[:8]}",
                                            **{"enable.partition.eof": True}))
        try:
            while not self._stop.is_set():
                try:
                    ends = self._assign(consumer)
                    break
                except KafkaException as exc:  # the broker is away: the view waits, queries say so
                    log.warning("view waiting for the broker", topic=self.topic, error=exc.args[0].str())
                    self._stop.wait(2)
            else:
                return
            while not self._stop.is_set():
                self._apply(consumer.consume(2000, 0.2))
                if self.behind:
                    self.behind = sum(max(0, hi - self._position(p)) for p, hi in ends.items())
        except Exception:  # a view must never take the API down; it says it stopped instead
            log.exception("view stopped", topic=self.topic)
            self.behind = -1
        finally:
            consumer.close()

    def _position(self, partition: int) -> int:
        raw = self.store.get(POS + str(partition).encode())
        return int(raw) if raw else 0

    def _assign(self, consumer: Consumer) -> dict[int, int]:
        md = consumer.list_topics(self.topic, timeout=self.kafka.request_timeout_s)
        ends = {}
        for p in sorted(md.topics[self.topic].partitions):
            _lo, ends[p] = consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                          timeout=self.kafka.request_timeout_s)
        consumer.assign([TopicPartition(self.topic, p, self._position(p) or OFFSET_BEGINNING) for p in ends])
        self.behind = sum(max(0, hi - self._position(p)) for p, hi in ends.items())
        return ends

    def _apply(self, msgs: list) -> None:
        if not msgs:
            return
        positions: dict[int, int] = {}
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:  # past a trailing commit marker
                    positions[m.partition()] = max(positions.get(m.partition(), 0), m.offset())
                continue
            positions[m.partition()] = m.offset() + 1
        writes = self._writes([m for m in msgs if not m.error()])
        writes += [(POS + str(p).encode(), str(o).encode()) for p, o in positions.items()]
        with self.lock:
            self.store.write(writes)


class MembershipView(FollowedStore):
    """tenant/geofence -> its occupants, tenant/entity -> its fences (the evaluator's state)."""

    logical = "geo.evaluator-state"

    def occupants(self, tenant: str, geofence_id: str, offset: int, limit: int) -> tuple[list[dict], int]:
        prefix = b"m" + scoped(tenant, geofence_id).encode() + SEP
        with self.lock:
            rows = [(k[len(prefix):].decode(), int(v)) for k, v in self.store.items(prefix)]
        rows.sort(key=lambda r: (r[1], r[0]))
        return [{"entity_id": e, "since": s} for e, s in rows[offset:offset + limit]], len(rows)

    def fences_of(self, tenant: str, entity_id: str) -> list[dict]:
        with self.lock:
            raw = self.store.get(b"e" + scoped(tenant, entity_id).encode())
        inside = json.loads(raw) if raw else []
        return [{"geofence_id": g, "since": s} for g, s in sorted(inside, key=lambda m: (m[1], m[0]))]

    def _writes(self, msgs: list) -> Writes:
        changes = []
        for m in msgs:
            key = (m.key() or b"").decode(errors="replace")
            if not key or key.startswith("\x00"):
                continue  # the evaluator's own metadata, not an entity
            try:
                tenant, entity = unscoped(key)
                changes.append((b"e" + key.encode(), tenant, entity, self._memberships(m.value())))
            except ValidationError as exc:
                log.error("changelog record skipped", offset=m.offset(), error=str(exc))
        # the batch's previous memberships in one MultiGet: a lookup per record was 40 % of a
        # first read of the changelog (py-spy, 300,000 entities), and grew with the store
        ekeys = list(dict.fromkeys(c[0] for c in changes))
        current = {k: json.loads(raw) if raw else [] for k, raw in zip(ekeys, self.store.get_many(ekeys))} \
            if ekeys else {}
        writes: Writes = []
        for ekey, tenant, entity, inside in changes:
            gone = {g for g, _ in current[ekey]} - {g for g, _ in inside}
            writes += [(b"m" + scoped(tenant, g).encode() + SEP + entity.encode(), None) for g in gone]
            writes += [(b"m" + scoped(tenant, g).encode() + SEP + entity.encode(), str(since).encode())
                       for g, since in inside]
            writes.append((ekey, json.dumps(inside).encode() if inside else None))
            current[ekey] = inside
        return writes

    def _memberships(self, value: bytes | None) -> list:
        if value is None:
            return []
        rec = self.codec.decode(value, "EntityState")
        return [[m["geofence_id"], m["entered_ms"]] for m in rec["memberships"]]


class AttributesView(FollowedStore):
    """tenant/entity -> the entity's attributes record, as geo.entities last said."""

    logical = "geo.entities"

    def get(self, tenant: str, entity_id: str) -> dict | None:
        with self.lock:
            raw = self.store.get(b"a" + scoped(tenant, entity_id).encode())
        return json.loads(raw) if raw else None

    def remember(self, rec: dict) -> None:
        """Read-your-writes for this API instance (the topic's copy follows)."""
        with self.lock:
            self.store.write([(b"a" + scoped(rec["tenant_id"], rec["entity_id"]).encode(),
                               None if rec["deleted"] else json.dumps(rec).encode())])

    def _writes(self, msgs: list) -> Writes:
        writes: Writes = []
        for m in msgs:
            try:
                rec = self.codec.decode(m.value(), "EntityAttributes") if m.value() else None
            except ValidationError as exc:
                log.error("entity record skipped", offset=m.offset(), error=str(exc))
                continue
            if rec is None:
                writes.append((b"a" + m.key(), None))
            else:
                key = b"a" + scoped(rec["tenant_id"], rec["entity_id"]).encode()
                writes.append((key, None if rec["deleted"] else json.dumps(rec).encode()))
        return writes


def wait_caught_up(view: FollowedStore, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if view.behind == 0:
            return True
        time.sleep(0.05)
    return False
