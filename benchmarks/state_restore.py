"""State at scale, measured: restart time and RSS of the evaluator and the CEP entity stage, and
the occupancy query. A script that prints a table, not a test.

For each entity count N (10,000 fences of tenant `bench`, N entities spread over them):

  1. The evaluator's changelog is populated with N real EntityState records: the state the
     membership machine computes for each entity's first update (inside fence i mod F), encoded
     by the codec exactly as the evaluator encodes it, written in transactions of the
     evaluator's batch size, plus each partition's `fences` metadata record (what an evaluator
     writes after reconciling the fences it has seen). A restore reads only keys and bytes off
     the changelog, so it cannot tell these records from ones an evaluator wrote; writing them
     directly takes seconds instead of pushing N updates through an evaluator first.
  2. Ceilings, in the same run: a bare read_committed consumer reading the changelog's bytes
     (no decoding, no store), and the same read decoding every record into its state and index
     keys in one process (what a restore must compute, without the store).
  3. `geoflux worker evaluator` is spawned three times: cold (no local store: a full restore),
     warm (after a SIGTERM and a few updates published: checkpoint present, small tail) and
     after a SIGKILL mid-stream (updates flowing). Each time: spawn -> group assignment ->
     every partition restored (its log line; VmRSS then) -> every update published before the
     spawn committed (the first new updates processed; VmHWM then).
  4. The CEP entity stage the same way, over N CepState records of a pattern mid-match.
  5. The API (`geoflux api`), following the changelog into its own store: spawn -> first
     occupancy answer (the view caught up), P50/P95/P99 of GET /geofences/{id}/occupants on
     random fences and GET /entities/{id}/geofences on random entities (HTTP, tenant key),
     then a restart after the evaluator wrote more: the view's catch-up from its own store.

    python benchmarks/state_restore.py --entities 100000,1000000
    python benchmarks/state_restore.py --entities 1000000 --stages cep   # one phase
    python benchmarks/state_restore.py --smoke      # seconds; a small run, no figure checked

The broker, the stage under test and this script share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from shapely.geometry import shape  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._ceiling import read_topic  # noqa: E402
from benchmarks.geofence_throughput import fence_features  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_config import consumer_config, producer_config, transactional_config  # noqa: E402
from connectors.topic_reader import TopicReader  # noqa: E402
from geoflux.keys import scoped  # noqa: E402
from geoflux.settings import GeofenceSettings, KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.control.geofence_registry import GeofenceRegistry  # noqa: E402
from services.devstack.local_process import free_port, port_is_open  # noqa: E402
from streams import evaluator_index as ix  # noqa: E402
from streams.cep.engine import Engine  # noqa: E402
from streams.cep.index import PatternTable  # noqa: E402
from streams.cep.keystate import FORMAT as CEP_FORMAT, KeyState  # noqa: E402
from streams.cep.patterns import parse_pattern  # noqa: E402
from streams.evaluator_records import state_from_record, state_to_record  # noqa: E402
from streams.fence_index import FenceIndex  # noqa: E402
from streams.geofence import fence_from_record  # noqa: E402
from streams.membership import EntityState, MembershipMachine, Update  # noqa: E402
from tests.integration.cep_helpers import put_patterns  # noqa: E402
from tests.integration.geo_helpers import kill, start_cli, stop  # noqa: E402

TENANT = "bench"
API_KEY = "state-bench-key-of-bench-000"
GEO = GeofenceSettings()


# -- populating state -------------------------------------------------------------------------
def publish_fences(settings: KafkaSettings, codec: AvroCodec, n: int) -> list[tuple[float, float, float, float]]:
    reg = GeofenceRegistry(settings, GeofenceSettings(max_vertices=100), codec)
    reg.start()
    feats = fence_features(n)
    for i in range(0, n, 5000):
        reg.put_many(feats[i:i + 5000])
    reg.close()
    return [shape(f["geometry"]).bounds for f, _ in feats]


def fence_index(settings: KafkaSettings, codec: AvroCodec) -> tuple[FenceIndex, dict[int, int]]:
    """The fences as the evaluator loads them, and the positions it records having seen."""
    index = FenceIndex()
    reader = TopicReader(settings, topic("geo.geofences", settings), "Geofence", codec,
                         lambda _k, rec, _m: index.upsert(fence_from_record(rec, GEO.hysteresis_m)) or True)
    reader.load(120)
    positions = dict(reader.positions)
    reader.close()
    return index, positions


def point_in(bounds, rnd: random.Random) -> tuple[float, float]:
    minx, miny, maxx, maxy = bounds
    return rnd.uniform(minx + (maxx - minx) * 0.1, maxx - (maxx - minx) * 0.1), \
        rnd.uniform(miny + (maxy - miny) * 0.1, maxy - (maxy - miny) * 0.1)


def entity_states(index: FenceIndex, boxes, n: int, ts_ms: int, chunk: int = 20_000):
    """(key, EntityState) of N entities after their first update, entity i in fence i mod F."""
    machine, rnd = MembershipMachine(index, int(GEO.allowed_lateness_s * 1000), GEO.history_max_points), random.Random(7)
    for start in range(0, n, chunk):
        ids = range(start, min(n, start + chunk))
        pts = [point_in(boxes[i % len(boxes)], rnd) for i in ids]
        zones = index.zones([p[0] for p in pts], [p[1] for p in pts])
        for i, (lon, lat), z in zip(ids, pts, zones):
            state = EntityState(f"e{i}", TENANT)
            machine.apply(state, Update(f"e{i}", TENANT, lon, lat, ts_ms), z)
            yield scoped(TENANT, f"e{i}"), state


def write_changelog(settings: KafkaSettings, t: str, records, meta: dict[str, bytes] | None = None,
                    batch: int = GEO.max_batch) -> tuple[int, int]:
    """Writes (key, value) in transactions of `batch` records, as a stage commits them, keyed
    and partitioned as the stage's input is (murmur2), and `meta` to every partition."""
    p = Producer(transactional_config(settings, f"bench-populate-{uuid.uuid4().hex[:8]}",
                                      **{"linger.ms": 20, "queue.buffering.max.messages": 500_000}))
    p.init_transactions(30)
    n = size = 0
    p.begin_transaction()
    for key, value in records:
        while True:
            try:
                p.produce(t, value, key=key)
                break
            except BufferError:
                p.poll(0.05)
        n, size = n + 1, size + len(value)
        if n % batch == 0:
            p.commit_transaction(60)
            p.begin_transaction()
    for name, value in (meta or {}).items():
        for part in range(settings.partitions):
            p.produce(t, value, key="\x00" + name, partition=part)
    p.commit_transaction(60)
    return n, size


def populate_evaluator(settings, codec, index, boxes, positions, n) -> tuple[int, int]:
    t = topic("geo.evaluator-state", settings)
    ts = int(time.time() * 1000) - 120_000  # older than the allowed lateness: a settled entity
    records = ((k, codec.encode(t, "EntityState", state_to_record(s))) for k, s in entity_states(index, boxes, n, ts))
    fences_seen = json.dumps({str(p): o for p, o in positions.items()}).encode()
    return write_changelog(settings, t, records, {"fences": fences_seen})


SEQUENCE = {"pattern_id": "depot-then-port", "tenant_id": TENANT, "severity": "info", "kind": "sequence",
            "within_s": 86_400, "lateness_s": 0,
            "steps": [{"event_type": "ENTER", "geofence_id": "g0"}, {"event_type": "ENTER", "geofence_id": "g1"}]}


def cep_event(i: int, entity: str, fence: str, ts: int) -> dict:
    return {"event_id": f"{i:032x}", "event_type": "ENTER", "entity_id": entity, "geofence_id": fence,
            "geofence_version": 1, "tenant_id": TENANT, "lon": 0.0, "lat": 0.0, "ts_ms": ts,
            "source": f"loc:{i}", "reason": None, "produced_ms": None, "attributes": {}}


def populate_cep(settings, codec, n) -> tuple[int, int]:
    """N entities mid-match: each entered g0 (the sequence's first step), the state computed
    by the stage's own engine and encoded as the stage encodes it."""
    put_patterns(settings, codec, [SEQUENCE])
    engine, t = Engine(PatternTable([parse_pattern(SEQUENCE)])), topic("geo.cep-state", settings)
    ts = int(time.time() * 1000) - 120_000

    def records():
        for i in range(n):
            ks = KeyState(TENANT, f"e{i}")
            engine.on_event(ks, cep_event(i, f"e{i}", "g0", ts))
            if ks.empty():
                raise SystemExit("the sequence's first step left no state: the benchmark's pattern is stale")
            st = {"key": scoped(TENANT, f"e{i}"), "tenant_id": TENANT, "patterns": ks.to_json(),
                  "format": CEP_FORMAT}
            yield scoped(TENANT, f"e{i}"), codec.encode(t, "CepState", st)
    return write_changelog(settings, t, records())


# -- ceilings ---------------------------------------------------------------------------------
def decode_entity(codec: AvroCodec):
    def on_record(m) -> None:
        key = m.key().decode()
        if not key.startswith("\x00"):
            ix.entity_index_keys(key, state_from_record(codec.decode(m.value(), "EntityState")))
    return on_record


# -- processes --------------------------------------------------------------------------------
def rss_mb(pid: int) -> tuple[float, float]:
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except FileNotFoundError:
        return float("nan"), float("nan")
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class LogTail:
    """The JSON log lines a worker wrote since this tail was opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = path.stat().st_size if path.exists() else 0

    def events(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.pos += cut
        out = []
        for line in data[:cut].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


def committed_at_end(c: Consumer, targets: dict[TopicPartition, int]) -> bool:
    done = c.committed(list(targets), timeout=10)
    return all(tp.offset >= targets[TopicPartition(tp.topic, tp.partition)] for tp in done)


def input_ends(settings: KafkaSettings, topics: list[str]) -> dict[TopicPartition, int]:
    c = Consumer(consumer_config(settings, f"bench-ends-{uuid.uuid4().hex[:8]}"))
    try:
        out = {}
        for t in topics:
            for p in range(settings.partitions):
                hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                if hi > 0:
                    out[TopicPartition(t, p)] = hi
        return out
    finally:
        c.close()


class Stage:
    """One stateful worker kind: how to spawn it and how to see it done."""

    def __init__(self, name: str, settings: KafkaSettings, args: list[str], group: str,
                 inputs: list[str], work: Path, stage: str) -> None:
        self.name, self.settings, self.args, self.group, self.inputs = name, settings, args, group, inputs
        self.stage, self.work = stage, work
        self.data = work / f"state-{name}"
        self.log = work / f"{name}.log"
        self.proc = None

    def spawn(self):
        self.proc = start_cli(self.settings, self.args, self.name, self.work, GEOFLUX_LOG_LEVEL="INFO",
                              GEOFLUX_STREAM_DATA_DIR=str(self.data), PYTHONPATH=str(ROOT))
        return self.proc

    def measure_start(self, timeout_s: float) -> dict:
        """Spawn -> assigned -> every partition restored -> every published input committed."""
        targets = input_ends(self.settings, self.inputs)
        tail = LogTail(self.log)
        probe = Consumer(consumer_config(self.settings, self.group))
        t0 = time.monotonic()
        proc = self.spawn()
        out = {"assigned": None, "restored": None, "records": 0, "rss": None}
        restored: set[int] = set()
        try:
            while True:
                now = time.monotonic() - t0
                if proc.poll() is not None:
                    raise SystemExit(f"{self.name} exited with {proc.returncode}; see {self.log}")
                if now > timeout_s:
                    raise SystemExit(f"{self.name} not caught up after {timeout_s} s; see {self.log}")
                for ev in tail.events():
                    if ev.get("event") == "assigned" and out["assigned"] is None:
                        out["assigned"] = now
                    if ev.get("event") == "restored" and ev.get("stage") == self.stage:
                        restored.add(ev["partition"])
                        out["records"] += ev.get("records", 0)
                if out["restored"] is None and len(restored) == self.settings.partitions:
                    out["restored"], out["rss"] = now, rss_mb(proc.pid)[0]
                if out["restored"] is not None and committed_at_end(probe, targets):
                    out["caught_up"] = time.monotonic() - t0
                    out["rss_end"], out["peak"] = rss_mb(proc.pid)
                    return out
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            kill(self.proc)
            self.proc = None


def restarts(stage: Stage, publish_probes, feed_updates, timeout_s: float) -> list[tuple[str, dict]]:
    """cold, warm (SIGTERM, a few updates, start) and kill (SIGKILL with updates flowing)."""
    rows = []
    shutil.rmtree(stage.data, ignore_errors=True)
    try:
        publish_probes(0)
        rows.append(("cold", stage.measure_start(timeout_s)))
        stage.stop()
        publish_probes(1)
        rows.append(("warm", stage.measure_start(timeout_s)))
        stop_feed = threading.Event()
        feeder = threading.Thread(target=feed_updates, args=(stop_feed,), daemon=True)
        feeder.start()
        time.sleep(3)  # the stage is committing the feed's updates when it is killed
        stage.kill()
        stop_feed.set()
        feeder.join(30)
        publish_probes(2)
        rows.append(("kill", stage.measure_start(timeout_s)))
    except BaseException:
        stage.kill()
        raise
    return rows


class Publisher:
    """Updates to the stages' inputs, keyed like every other producer of them (murmur2)."""

    def __init__(self, settings: KafkaSettings, codec: AvroCodec) -> None:
        self.settings, self.codec = settings, codec
        self.producer = Producer(producer_config(settings))
        self.seq = 0

    def send(self, t: str, schema: str, key: str, rec: dict, seen: set | None = None) -> None:
        def delivered(err, msg):
            if err is None and seen is not None:
                seen.add(msg.partition())
        self.producer.produce(t, self.codec.encode(t, schema, rec), key=key, on_delivery=delivered)
        self.seq += 1

    def cover(self, make, rnd: random.Random, at_least: int = 3) -> None:
        """At least `at_least` records, and on every partition one or more."""
        seen: set[int] = set()
        sent = 0
        while len(seen) < self.settings.partitions or sent < at_least:
            make(rnd, seen)
            sent += 1
            if sent % 10 == 0 or sent >= at_least:
                self.producer.flush(30)
            if sent > 10_000:
                raise SystemExit("probes do not reach every partition")
        self.producer.flush(30)

    def close(self) -> None:
        self.producer.flush(30)


def evaluator_traffic(settings, codec, boxes, n):
    pub, t = Publisher(settings, codec), topic("geo.locations", settings)

    def update(rnd, seen=None):
        i = rnd.randrange(n)
        lon, lat = point_in(boxes[rnd.randrange(len(boxes))], rnd)  # elsewhere: an EXIT and an ENTER
        rec = {"entity_id": f"e{i}", "tenant_id": TENANT, "lon": lon, "lat": lat,
               "ts_ms": int(time.time() * 1000), "attributes": {}, "produced_ms": int(time.time() * 1000)}
        pub.send(t, "LocationUpdate", scoped(TENANT, f"e{i}"), rec, seen)

    def probes(round_: int) -> None:
        pub.cover(update, random.Random(100 + round_), at_least=20)

    def flowing(stop_event: threading.Event, rate: float = 1000) -> None:
        paced(pub, update, random.Random(200), stop_event, rate)
    return pub, probes, flowing


def paced(pub, send, rnd, stop_event: threading.Event, rate: float) -> None:
    """`send(rnd)` at `rate` records a second until `stop_event`, then flushes."""
    t0, k = time.monotonic(), 0
    while not stop_event.is_set():
        send(rnd)
        k += 1
        ahead = k / rate - (time.monotonic() - t0)
        pub.producer.poll(0)
        if ahead > 0.005:
            time.sleep(ahead)
    pub.producer.flush(30)


def cep_traffic(settings, codec, n):
    pub, t = Publisher(settings, codec), topic("geo.cep-input", settings)

    def event(rnd, seen=None):
        i = rnd.randrange(n)
        ts = int(time.time() * 1000)
        pub.send(t, "GeofenceEvent", scoped(TENANT, f"e{i}"), cep_event(10**9 + pub.seq, f"e{i}", "g1", ts), seen)

    def probes(round_: int) -> None:
        pub.cover(event, random.Random(300 + round_), at_least=20)

    def flowing(stop_event: threading.Event, rate: float = 1000) -> None:
        paced(pub, event, random.Random(400), stop_event, rate)
    return pub, probes, flowing


# -- occupancy --------------------------------------------------------------------------------
class Api:
    def __init__(self, settings: KafkaSettings, work: Path) -> None:
        self.settings, self.work, self.port = settings, work, free_port()
        self.proc = None

    def spawn(self):
        self.proc = start_cli(self.settings, ["api"], "api", self.work, GEOFLUX_API_PORT=str(self.port),
                              GEOFLUX_API_KEYS=json.dumps({API_KEY: TENANT}),
                              GEOFLUX_STREAM_DATA_DIR=str(self.work / "state-api"), PYTHONPATH=str(ROOT))
        return self.proc

    def get(self, conn: http.client.HTTPConnection, path: str) -> tuple[int, dict]:
        conn.request("GET", path, headers={"Authorization": f"Bearer {API_KEY}"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")

    def measure_start(self, timeout_s: float) -> dict:
        """Spawn -> port open -> first occupancy answer (the view has caught up)."""
        t0 = time.monotonic()
        proc = self.spawn()
        out = {}
        conn = None
        try:
            while True:
                now = time.monotonic() - t0
                if proc.poll() is not None or now > timeout_s:
                    raise SystemExit(f"the API did not answer in {timeout_s} s; see {self.work / 'api.log'}")
                if "port" not in out:
                    if port_is_open("127.0.0.1", self.port):
                        out["port"] = now
                        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                elif self.get(conn, "/api/v1/geofences/g0/occupants?limit=1")[0] == 200:
                    out["ready"] = time.monotonic() - t0
                    out["rss"], out["peak"] = rss_mb(proc.pid)
                    return out
                time.sleep(0.05)
        finally:
            if conn is not None:
                conn.close()

    def latencies(self, paths: list[str]) -> list[float]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        out = []
        try:
            for path in paths:
                t0 = time.perf_counter()
                status, body = self.get(conn, path)
                out.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    raise SystemExit(f"{path}: {status} {body}")
        finally:
            conn.close()
        return out

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def quantiles(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    q = (lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan"))
    return q(0.50), q(0.95), q(0.99)


def occupancy(settings, work, n_fences, n_entities, queries, flowing, timeout_s) -> dict:
    api, rnd = Api(settings, work), random.Random(11)
    try:
        cold = api.measure_start(timeout_s)
        fences = api.latencies([f"/api/v1/geofences/g{rnd.randrange(n_fences)}/occupants" for _ in range(queries)])
        entities = api.latencies([f"/api/v1/entities/e{rnd.randrange(n_entities)}/geofences" for _ in range(queries)])
        api.stop()
        stop_feed = threading.Event()  # the evaluator writes while the API is down: a tail to read
        feeder = threading.Thread(target=flowing, args=(stop_feed,), daemon=True)
        feeder.start()
        time.sleep(5)
        stop_feed.set()
        feeder.join(30)
        again = api.measure_start(timeout_s)
    finally:
        api.stop()
    return {"cold": cold, "restart": again, "fences": quantiles(fences), "entities": quantiles(entities)}


# -- one size ---------------------------------------------------------------------------------
def run_size(bootstrap: str, n: int, args, work: Path) -> dict:
    codec = AvroCodec()
    res: dict = {"entities": n}
    stages = args.stages.split(",")
    if "evaluator" in stages:
        run_evaluator_phase(bootstrap, n, args, work, codec, res)
    if "cep" in stages:
        run_cep_phase(bootstrap, n, args, work, codec, res)
    return res


def run_evaluator_phase(bootstrap: str, n: int, args, work: Path, codec: AvroCodec, res: dict) -> None:
    """The evaluator and the API."""
    timeout = args.timeout
    s = KafkaSettings(bootstrap=bootstrap, partitions=args.partitions, topic_prefix=f"sb{uuid.uuid4().hex[:6]}.")
    apply(s)
    boxes = publish_fences(s, codec, args.fences)
    index, positions = fence_index(s, codec)
    t0 = time.monotonic()
    res["ev_records"], res["ev_bytes"] = populate_evaluator(s, codec, index, boxes, positions, n)
    res["ev_populate"] = time.monotonic() - t0
    t_log = topic("geo.evaluator-state", s)
    res["ev_bare"] = read_topic(s, t_log)[0]
    res["ev_decode"] = read_topic(s, t_log, decode_entity(codec))[0]
    evaluator = Stage("evaluator", s, ["worker", "evaluator", "--instance", "0"], s.topic_prefix + GEO.group_id,
                      [topic("geo.locations", s)], work, "evaluator")
    pub, probes, flowing = evaluator_traffic(s, codec, boxes, n)
    try:
        res["evaluator"] = restarts(evaluator, probes, flowing, timeout)
        print(f"  evaluator {n:,}: {res['evaluator']}", file=sys.stderr, flush=True)
        res["occupancy"] = occupancy(s, work, args.fences, n, args.queries, flowing, timeout)
    finally:
        evaluator.stop()
        pub.close()


def run_cep_phase(bootstrap: str, n: int, args, work: Path, codec: AvroCodec, res: dict) -> None:
    """The CEP entity stage, on topics of its own."""
    timeout = args.timeout
    c = KafkaSettings(bootstrap=bootstrap, partitions=args.partitions, topic_prefix=f"sc{uuid.uuid4().hex[:6]}.")
    apply(c)
    res["cep_records"], res["cep_bytes"] = populate_cep(c, codec, n)
    t_cep = topic("geo.cep-state", c)
    res["cep_bare"] = read_topic(c, t_cep)[0]
    cep = Stage("cep-entity", c, ["worker", "cep", "--mode", "entity"], c.topic_prefix + "geoflux-cep-entity",
                [topic("geo.cep-input", c)], work, "cep-entity")
    pub, probes, flowing = cep_traffic(c, codec, n)
    try:
        res["cep"] = restarts(cep, probes, flowing, timeout)
    finally:
        cep.stop()
        pub.close()


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def print_table(results: list[dict], args, loads: list[str]) -> None:
    print(f"\nstate at scale: {args.partitions} partitions, {args.fences:,} fences, RocksDB stores, "
          f"{os.cpu_count()} cores shared with the broker (load average before each size: {'; '.join(loads)})\n")
    print(f"{'entities':>9} {'changelog':>10} {'MB':>6} {'bare read s':>12} {'read+decode s':>14}")
    for r in results:
        if "ev_bytes" in r:
            print(f"{r['entities']:>9,} {'evaluator':>10} {r['ev_bytes'] / 1e6:>6.0f} {r['ev_bare']:>12.1f} "
                  f"{r['ev_decode']:>14.1f}")
        if "cep_bytes" in r:
            print(f"{r['entities']:>9,} {'cep-entity':>10} {r['cep_bytes'] / 1e6:>6.0f} {r['cep_bare']:>12.1f} {'-':>14}")
    print(f"\n{'stage':<11} {'entities':>9} {'start':<5} {'assigned s':>10} {'restored s':>10} "
          f"{'records':>9} {'caught up s':>11} {'RSS MB':>7} {'peak MB':>8} {'restore/bare read':>17}")
    for key, name, bare in (("evaluator", "evaluator", "ev_bare"), ("cep", "cep-entity", "cep_bare")):
        for r in results:
            for kind, m in r.get(key, ()):
                # the ratio: assigned -> restored against the ceiling, a bare read of the whole changelog
                ratio = (m["restored"] - (m["assigned"] or 0)) / r[bare] if r.get(bare) else float("nan")
                print(f"{name:<11} {r['entities']:>9,} {kind:<5} {m['assigned'] or float('nan'):>10.1f} "
                      f"{m['restored']:>10.1f} {m['records']:>9,} {m['caught_up']:>11.1f} {m['rss']:>7.0f} "
                      f"{m['peak']:>8.0f} {ratio:>17.2f}")
    print(f"\n{'entities':>9} {'fences':>7} {'API port open s':>15} {'view ready s':>12} {'restart: port':>13} "
          f"{'view ready s':>12} {'occupants P50/P95/P99 ms':>25} {'entity fences P50/P95/P99 ms':>29} "
          f"{'API RSS MB':>10}")
    for r in (r for r in results if "occupancy" in r):
        o = r["occupancy"]
        print(f"{r['entities']:>9,} {args.fences:>7,} {o['cold']['port']:>15.1f} {o['cold']['ready']:>12.1f} "
              f"{o['restart']['port']:>13.1f} {o['restart']['ready']:>12.1f} "
              f"{'/'.join(f'{x:.1f}' for x in o['fences']):>25} {'/'.join(f'{x:.1f}' for x in o['entities']):>29} "
              f"{o['restart']['peak']:>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", default="100000,1000000")
    ap.add_argument("--fences", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a start may take")
    ap.add_argument("--stages", default="evaluator,cep", help="which phases run: evaluator (with the API), cep")
    ap.add_argument("--smoke", action="store_true", help="2,000 entities, 100 fences: seconds, figures meaningless")
    args = ap.parse_args()
    if args.smoke:
        args.entities, args.fences, args.queries, args.partitions, args.timeout = "2000", 100, 50, 3, 180
    work = Path(tempfile.mkdtemp(prefix="geoflux-statebench-"))
    results, loads = [], []
    try:
        with benchmark_broker(work) as bootstrap:
            for n in [int(x) for x in args.entities.split(",")]:
                loads.append(load_average())
                results.append(run_size(bootstrap, n, args, work))
                print(f"done: {n:,} entities", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(results, args, loads)


if __name__ == "__main__":
    main()
