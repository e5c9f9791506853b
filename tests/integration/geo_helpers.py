"""Shared by the geofence end-to-end tests: worker processes, a location publisher and an
event collector that reads what a downstream read_committed consumer would read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from connectors.kafka_config import consumer_config
from connectors.kafka_producer import ReliableProducer
from geoflux.errors import ValidationError
from geoflux.keys import scoped
from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.geofence_registry import GeofenceRegistry
from tests.conftest import wait_for


def worker_env(settings: KafkaSettings, **extra) -> dict:
    env = dict(os.environ)
    env.update({"GEOFLUX_KAFKA_BOOTSTRAP": settings.bootstrap,
                "GEOFLUX_KAFKA_TOPIC_PREFIX": settings.topic_prefix,
                "GEOFLUX_KAFKA_PARTITIONS": str(settings.partitions),
                "GEOFLUX_LOG_LEVEL": os.environ.get("GEOFLUX_TEST_LOG_LEVEL", "WARNING"), **extra})
    env.pop("GEOFLUX_SCHEMA_REGISTRY_URL", None)
    return env


def start_cli(settings: KafkaSettings, args: list[str], log_name: str, log_dir: Path,
              **env) -> subprocess.Popen:
    """`geoflux ARGS` as a child process in its own session (so it can be SIGKILLed whole)."""
    log = open(log_dir / f"{log_name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args],
                            env=worker_env(settings, **env), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def start_worker(settings: KafkaSettings, instance: str, log_dir: Path, **env) -> subprocess.Popen:
    return start_cli(settings, ["worker", "evaluator", "--instance", instance],
                     f"evaluator-{instance}", log_dir, **env)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            kill(proc)


def publish_fences(settings: KafkaSettings, features: list[dict], codec: AvroCodec) -> GeofenceRegistry:
    reg = GeofenceRegistry(settings, GeofenceSettings(), codec)
    reg.start()
    reg.put_many([(f, f["id"]) for f in features])
    return reg


def publish_locations(settings: KafkaSettings, codec: AvroCodec, rows, tenant: str = "t") -> int:
    """rows: (entity, lon, lat, ts_ms). Keyed by tenant/entity, so per-entity order is kept."""
    t = topic("geo.locations", settings)
    producer = ReliableProducer(settings)
    for entity, lon, lat, ts in rows:
        rec = {"entity_id": entity, "tenant_id": tenant, "lon": lon, "lat": lat, "ts_ms": ts,
               "attributes": {}, "produced_ms": int(time.time() * 1000)}
        producer.send(t, codec.encode(t, "LocationUpdate", rec), key=scoped(tenant, entity))
    return producer.flush_or_raise()


class EventCollector:
    """Reads a topic read_committed in a background thread; `records` keeps read order. A
    record read again from the same position (the collector's own group lost its uncommitted
    position when the broker restarted) is the same record, not a duplicate: it is kept once,
    so a duplicate here is a second record with the same event id."""

    def __init__(self, settings: KafkaSettings, codec: AvroCodec, logical: str = "geo.geofence-events",
                 schema: str = "GeofenceEvent") -> None:
        self.codec, self.schema = codec, schema
        self.records: list[tuple[int, int, dict]] = []
        self._seen: set[tuple[int, int]] = set()
        self.undecodable = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": settings.bootstrap,
                                   "group.id": f"collector-{uuid.uuid4().hex}",
                                   "auto.offset.reset": "earliest",
                                   "isolation.level": "read_committed"})
        self._consumer.subscribe([topic(logical, settings)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for m in self._consumer.consume(500, 0.2):
                if m.error():
                    continue
                if (m.partition(), m.offset()) in self._seen:
                    continue
                try:
                    rec = self.codec.decode(m.value(), self.schema)
                except ValidationError:  # garbage a test published (poison records): not ours
                    self.undecodable += 1
                    continue
                rec["_read_ms"] = int(time.time() * 1000)
                with self._lock:
                    self._seen.add((m.partition(), m.offset()))
                    self.records.append((m.partition(), m.offset(), rec))

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [r for _, _, r in self.records]

    def unique_ids(self) -> set[str]:
        return {r["event_id"] for r in self.snapshot()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


# API keys every test API runs with: an operator key, and one key per tenant used in tests
OPERATOR_KEY = "test-operator-key-0000"
TENANT_KEYS = {t: f"test-key-of-{t}-0000000" for t in ("t", "acme", "globex", "default")}
API_KEYS = json.dumps({OPERATOR_KEY: "*", **{k: t for t, k in TENANT_KEYS.items()}})


def start_api(settings: KafkaSettings, port: int, log_dir: Path, **env) -> subprocess.Popen:
    return start_cli(settings, ["api"], "api", log_dir, GEOFLUX_API_PORT=str(port),
                     **{"GEOFLUX_API_KEYS": API_KEYS, **env})


def http(method: str, url: str, body=None, timeout: float = 30.0,
         key: str | None = OPERATOR_KEY, headers: dict | None = None) -> tuple[int, dict]:
    """JSON over HTTP with an API key (the operator's unless told; None: no key at all)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
               **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_fence_in_effect(api_v1: str, fence_id: str, lon: float, lat: float, tenant: str = "t",
                         key: str | None = OPERATOR_KEY, timeout_s: float = 60) -> None:
    """Waits until the evaluator has read a fence the API just stored: it reads new fences from
    their topic a moment after the 201, and until then an update inside gives no ENTER. Each
    probe is a new entity named `probe-N`, so tests that count entities or events leave those out."""
    probes = iter(range(10**6))

    def in_effect():
        status, body = http("POST", f"{api_v1}/geoevent/evaluate", {
            "entity_id": f"probe-{next(probes)}", "lon": lon, "lat": lat, "tenant_id": tenant,
            "timestamp": int(time.time() * 1000)}, key=key)
        return status == 200 and fence_id in body["inside"]

    wait_for(in_effect, timeout_s, what=f"the evaluator to have fence {fence_id}")


def last_offsets(settings: KafkaSettings, t: str, partitions) -> dict[int, int]:
    """Per partition, the offset after its last record a read_committed consumer can see, 0 if
    none (a topic written in transactions ends with commit markers, which are not records).
    One consumer reads every partition's tail."""
    from confluent_kafka import KafkaError, TopicPartition

    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    try:
        his = {p: c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1] for p in partitions}
        ends = dict.fromkeys(his, 0)
        tails = {p for p, hi in his.items() if hi > 0}
        if not tails:
            return ends
        c.assign([TopicPartition(t, p, max(0, his[p] - 50)) for p in tails])
        deadline = time.monotonic() + 10
        while tails and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        tails.discard(m.partition())
                    continue
                ends[m.partition()] = m.offset() + 1
        return ends
    finally:
        c.close()


def lag_is_zero(settings: KafkaSettings, group: str | None = None,
                logical: str = "geo.locations") -> bool:
    """Every record of the topic is consumed and committed by the group (default: the
    evaluator's group on geo.locations)."""
    from confluent_kafka import TopicPartition

    t = topic(logical, settings)
    c = Consumer({"bootstrap.servers": settings.bootstrap,
                  "group.id": settings.topic_prefix + (group or GeofenceSettings().group_id)})
    try:
        parts = [TopicPartition(t, p) for p in range(settings.partitions)]
        behind = {}  # partition -> committed offset, short of the high watermark
        for tp in c.committed(parts, timeout=10):
            _, hi = c.get_watermark_offsets(TopicPartition(t, tp.partition), timeout=10)
            if hi > 0 and tp.offset < hi:
                behind[tp.partition] = tp.offset
    finally:
        c.close()
    # short of the watermark is still done when only commit markers are left
    ends = last_offsets(settings, t, behind) if behind else {}
    return all(offset >= ends[p] for p, offset in behind.items())


def read_to_end(kafka_settings, t: str) -> list:
    """Every committed record of topic `t`, read to the end of each partition."""
    c = Consumer(consumer_config(kafka_settings, f"probe-{uuid.uuid4().hex[:8]}",
                                 **{"enable.partition.eof": True}))
    try:
        c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for p in range(kafka_settings.partitions)])
        out, ended = [], set()
        deadline = time.monotonic() + 30
        while len(ended) < kafka_settings.partitions and time.monotonic() < deadline:
            for m in c.consume(500, 0.2):
                if not m.error():
                    out.append(m)
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(m.partition())
        assert len(ended) == kafka_settings.partitions, f"{t} not read to its end"
        return out
    finally:
        c.close()
