"""Geofence evaluation through Kafka, measured: a script that prints a table, not a test.

For each fence count it
  1. publishes the fences and pre-loads a backlog of location updates; measures the ceiling,
     a transactional pass-through on the same backlog (the evaluator's shell, batch size and
     decode of every record, the bytes produced on unchanged: a stage minus its work); then
     starts one evaluator process and times how fast it drains the backlog (sustained
     updates/s), printed with its ratio to the ceiling;
  2. feeds updates at fixed rates from a separate producer process and measures end-to-end
     latency, update produced -> event readable by a read_committed consumer (P50/P95/P99),
     of the updates fed after a warm-up (`--warmup`, the allowed lateness: by then an entity's
     state holds the points of this feed's rate, not of the backlog or the feed before);
     then, the evaluator stopped, the same feeds through the pass-through in a process of its
     own forwarding about the share of updates that made an event: the latency ceiling;
  3. reads the evaluator's peak RSS.
With `--churn N`, a third process edits N fences a second (each moved by up to a fence's width,
a new version through the geofence registry, as the API writes it) during every latency run.

    python benchmarks/geofence_throughput.py --fences 1000,10000,100000
    python benchmarks/geofence_throughput.py --fences 10000 --rates "" --profile /tmp/ev.svg
        (drain and ceiling only; py-spy samples the evaluator while it drains)
    python benchmarks/geofence_throughput.py --fences 100000 --rates 10000 --churn 100
        (issue 17's churn target: P95 at 10,000 updates/s while 100 fences a second change)
    python benchmarks/geofence_throughput.py --smoke     # seconds: the script works, figures mean nothing

Everything runs on this machine: broker, evaluator, producer and consumer share its cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import ConsumerGroupState, Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from shapely.geometry import box, mapping  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._cpu import machine_busy_s  # noqa: E402
from benchmarks._ceiling import (commit_at_end, create_output_topic, pass_through_ceiling,  # noqa: E402
                                 run_sampled_pass_through)
from connectors.kafka_admin import admin_client, apply  # noqa: E402
from connectors.kafka_config import client_config  # noqa: E402
from geoflux.settings import GeofenceSettings, KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.control.geofence_registry import GeofenceRegistry  # noqa: E402
from tests.integration.geo_helpers import start_worker, stop  # noqa: E402


# the feed, editor and latency-ceiling processes are spawned, not forked: forked while the
# latency reader's librdkafka client was live (its threads are not copied into the child, the
# locks they may hold are), the feed or the ceiling's stage produced nothing in 2 of 13 runs
SPAWN = mp.get_context("spawn")


def extent_for(n_fences: int) -> float:
    return (n_fences / 1000) ** 0.5  # keep fence density (and hits per point) constant


def fence_features(n: int, seed: int = 1) -> list[tuple[dict, str]]:
    rnd, ext = random.Random(seed), extent_for(n)
    out = []
    for i in range(n):
        x, y = rnd.uniform(0, ext), rnd.uniform(0, ext)
        w, h = rnd.uniform(0.005, 0.04), rnd.uniform(0.005, 0.04)
        out.append(({"type": "Feature", "geometry": mapping(box(x, y, x + w, y + h)),
                     "properties": {"name": f"g{i}", "tenant_id": "bench"}}, f"g{i}"))
    return out


FLEET_SEED = 1  # the backlog and every paced feed follow the same tracks, one after the other


class Fleet:
    """Entities on straight-ish tracks; each call to `next` moves one entity one step."""

    def __init__(self, n_entities: int, ext: float, seed: int = 2) -> None:
        rnd = random.Random(seed)
        self.pos = [[rnd.uniform(0, ext), rnd.uniform(0, ext)] for _ in range(n_entities)]
        self.vel = [[rnd.uniform(-1, 1) * 0.003, rnd.uniform(-1, 1) * 0.003] for _ in range(n_entities)]
        self.ext, self.i = ext, 0
        self.last_ts = [0] * n_entities

    def advance(self, steps: int) -> None:
        """Moves on `steps` updates without making them: a later feed continues the tracks an
        earlier one left, rather than every entity jumping to a fresh start (a burst of EXITs
        and ENTERs no live feed has)."""
        for _ in range(steps):
            self._move()

    def _move(self) -> int:
        k = self.i % len(self.pos)
        self.i += 1
        p, v = self.pos[k], self.vel[k]
        for d in (0, 1):
            p[d] += v[d]
            if not 0 <= p[d] <= self.ext:
                v[d] = -v[d]
                p[d] = min(max(p[d], 0), self.ext)
        return k

    def next(self) -> tuple[str, float, float, int]:
        k = self._move()
        p = self.pos[k]
        # event time is the wall clock (strictly increasing per entity), as a live feed's is
        ts = self.last_ts[k] = max(int(time.time() * 1000), self.last_ts[k] + 1)
        return f"e{k}", p[0], p[1], ts


def _zigzag(n: int) -> bytes:
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def produce(settings: KafkaSettings, n: int, rate: float, n_entities: int, ext: float, seed: int,
            started=None, skip: int = 0) -> None:
    """`n` updates at `rate` a second (0: as fast as it can); `started` (a shared double) is set
    to the wall-clock time the first one is produced at."""
    codec, t = AvroCodec(), topic("geo.locations", settings)
    producer = Producer(client_config(settings, **{
        "linger.ms": 2, "enable.idempotence": True, "acks": "all", "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000}))
    fleet = Fleet(n_entities, ext, seed)
    fleet.advance(skip)
    if started is not None:
        started.value = time.time()
    start = time.perf_counter()
    for i in range(n):
        if rate:
            ahead = i / rate - (time.perf_counter() - start)
            if ahead > 0.002:
                time.sleep(ahead)  # pacing the feed to the target rate
        entity, lon, lat, ts = fleet.next()
        rec = {"entity_id": entity, "tenant_id": "bench", "lon": lon, "lat": lat, "ts_ms": ts,
               "attributes": {}, "produced_ms": None}
        # produced_ms is the record's last field: stamp it as late as possible, cheaply
        value = codec.encode(t, "LocationUpdate", rec)[:-1] + b"\x02" + _zigzag(int(time.time() * 1000))
        while True:
            try:
                producer.produce(t, value, key=entity)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(60)


def feed_offsets(backlog: int, rates: list[float], seconds: float) -> list[int]:
    """Where each paced feed of `seconds` starts on the fleet's tracks: after the backlog and
    the feeds before it."""
    out, fed = [], backlog
    for r in rates:
        out.append(fed)
        fed += int(r * seconds)
    return out


def evaluator_group(settings: KafkaSettings) -> str:
    return settings.topic_prefix + GeofenceSettings().group_id


def committed_total(settings: KafkaSettings, group: str | None = None) -> int:
    c = Consumer(client_config(settings, **{"group.id": group or evaluator_group(settings)}))
    try:
        parts = [TopicPartition(topic("geo.locations", settings), p) for p in range(settings.partitions)]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def wait(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def edit_fences(settings: KafkaSettings, n_fences: int, rate: float, seconds: float, done, ready) -> None:
    """Moves randomly chosen fences, `rate` edits a second for `seconds` once `ready` is set
    (the registry read: at 100,000 fences that takes seconds of CPU, which must not overlap the
    measured feed); each edit is a new version of an existing fence, written as the API writes it.
    The edits due at each moment go out in one registry write (one acknowledgement each time):
    waiting for one acknowledgement per edit capped the rate near 33 a second."""
    reg = GeofenceRegistry(settings, GeofenceSettings(max_vertices=100), AvroCodec())
    reg.start()
    feats, rnd, ext = fence_features(n_fences), random.Random(11), extent_for(n_fences)
    ready.set()
    start, i, written = time.time(), 0, 0
    stop_at = start + seconds
    try:
        while time.time() < stop_at:
            due = int((time.time() - start) * rate) + 1 - i
            if due <= 0:
                time.sleep(min(0.01, 1 / rate))  # pacing the edits to the target rate
                continue
            edits = {}
            for _ in range(due):
                feature, fid = feats[rnd.randrange(n_fences)]
                (x0, y0), (x1, y1) = (feature["geometry"]["coordinates"][0][k] for k in (0, 2))
                dx, dy = rnd.uniform(-0.02, 0.02), rnd.uniform(-0.02, 0.02)
                x, y = min(max(min(x0, x1) + dx, 0), ext), min(max(min(y0, y1) + dy, 0), ext)
                edits[fid] = {**feature, "geometry": mapping(box(x, y, x + abs(x1 - x0), y + abs(y1 - y0)))}
            reg.put_many([(feature, fid) for fid, feature in edits.items()])
            i += due
            written += len(edits)  # two picks of one fence in a group are one edit
            done.value = written
    finally:
        reg.close()


def is_event_of(run_start_ms: int):
    return lambda rec: (rec["produced_ms"] or 0) >= run_start_ms and rec["source"].startswith("loc:")


def is_update_of(run_start_ms: int):
    return lambda rec: (rec["produced_ms"] or 0) >= run_start_ms


def latency_run(settings: KafkaSettings, rate: float, seconds: float, n_entities: int,
                ext: float, seed: int, churn: float = 0, n_fences: int = 0,
                read: tuple[str, str, object] | None = None, group: str | None = None,
                skip: int = 0, warmup: float = 0) -> dict:
    """P50/P95/P99 of update produced -> its output readable (read_committed), over the
    updates fed after `warmup` seconds of the same feed (the machine's busy cores over the same
    span). By default the output is the evaluator's events (`geo.geofence-events`); `read` is
    (topic, schema, counts(run_start_ms) -> predicate) for another stage's, and `group` the
    group whose commits say every update of the run was processed."""
    events_topic, schema, counts = read or (topic("geo.geofence-events", settings), "GeofenceEvent", is_event_of)
    codec = AvroCodec()
    c = Consumer(client_config(settings, **{"group.id": uuid.uuid4().hex,
                                            "isolation.level": "read_committed",
                                            "auto.offset.reset": "latest", "fetch.wait.max.ms": 5}))
    c.subscribe([events_topic])
    wait(lambda: (c.consume(100, 0.2), bool(c.assignment()))[1], 30, "event consumer assignment")
    run_start_ms = int(time.time() * 1000)  # only events caused by this run's updates count
    counted = counts(run_start_ms)
    n = int(rate * (warmup + seconds))
    base = committed_total(settings, group)
    started = SPAWN.Value("d", 0.0)
    proc = SPAWN.Process(target=produce, args=(settings, n, rate, n_entities, ext, seed, started, skip))
    editor, edits, ready = None, SPAWN.Value("i", 0), SPAWN.Event()
    if churn:  # edits start with the feed and stop with its last update (its expected end)
        editor = SPAWN.Process(target=edit_fences, args=(settings, n_fences, churn, warmup + seconds, edits, ready))
        editor.start()
        if not ready.wait(600):
            raise SystemExit("the fence editor did not read the registry within 600 s")
    t0 = time.monotonic()
    proc.start()
    lat: list[int] = []
    measured_from_ms = None  # wall clock: the first update past the warm-up is produced then
    busy0 = t_busy0 = None
    while proc.is_alive() or committed_total(settings, group) < base + n:
        if measured_from_ms is None and started.value:
            measured_from_ms = int((started.value + warmup) * 1000)
        if busy0 is None and measured_from_ms is not None and time.time() * 1000 >= measured_from_ms:
            busy0, t_busy0 = machine_busy_s(), time.monotonic()
        for m in c.consume(1000, 0.005):  # a longer wait would be measured as latency
            if not m.error():
                now = int(time.time() * 1000)
                rec = codec.decode(m.value(), schema)
                if counted(rec) and measured_from_ms is not None and rec["produced_ms"] >= measured_from_ms:
                    lat.append(now - rec["produced_ms"])
        if time.monotonic() - t0 > (warmup + seconds) * 6 + 60:
            break
    # cores busy, whoever used them, from the warm-up's end
    busy = ((machine_busy_s() - busy0) / (time.monotonic() - t_busy0)) if busy0 is not None else float("nan")
    proc.join()
    # from the feed's first update: a spawned process takes a second or so to import
    elapsed = time.time() - started.value if started.value else time.monotonic() - t0
    if editor is not None:
        editor.join(warmup + seconds + 60)
        if editor.is_alive():
            editor.kill()
    c.close()
    lat.sort()
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan"))
    return {"rate": rate, "churn": edits.value / (warmup + seconds), "achieved": n / elapsed, "events": len(lat), "busy": busy, "p50": q(0.50),
            "p95": q(0.95), "p99": q(0.99)}


def ceiling(settings: KafkaSettings, codec: AvroCodec, n: int, max_batch: int) -> float:
    return pass_through_ceiling(settings, codec, "geo.locations", "LocationUpdate", n, max_batch,
                                GeofenceSettings().poll_timeout_s)


def group_stable(admin: AdminClient, group: str) -> bool:
    """Whether `group` has a member holding an assignment (the stage is reading)."""
    desc = admin.describe_consumer_groups([group])[group].result(10)
    return desc.state == ConsumerGroupState.STABLE and any(m.assignment.topic_partitions for m in desc.members)


def latency_ceiling(settings: KafkaSettings, rates: list[float], seconds: float, n_entities: int,
                    ext: float, max_batch: int, every: int, backlog: int, warmup: float) -> list[dict]:
    """The same paced feeds through the shell forwarding one update in `every` (the evaluator's
    share of updates that made an event in the same run), in a process of its own as the
    evaluator is: the latency of the shell, broker, feed and reader with no stage's work."""
    out, group = settings.topic_prefix + "bench.latency-passthrough", settings.topic_prefix + "bench-latency"
    admin = admin_client(settings)
    create_output_topic(admin, settings, out)
    locations = topic("geo.locations", settings)
    commit_at_end(settings, group, locations)
    stage = SPAWN.Process(target=run_sampled_pass_through,
                          args=(settings, "geo.locations", "LocationUpdate", out, every, group, max_batch,
                                GeofenceSettings().poll_timeout_s))
    stage.start()
    try:
        wait(lambda: group_stable(admin, group), 120, "the latency ceiling's stage to join its group")
        return [latency_run(settings, r, seconds, n_entities, ext, FLEET_SEED,
                            read=(out, "LocationUpdate", is_update_of), group=group, skip=skip,
                            warmup=warmup)
                for r, skip in zip(rates, feed_offsets(backlog, rates, warmup + seconds))]
    finally:
        stage.terminate()
        stage.join(30)


def run_one(bootstrap: str, n_fences: int, backlog: int, rates: list[float], seconds: float,
            partitions: int, n_entities: int, workdir: Path, max_batch: int,
            profile: str | None, evaluators: int = 1, churn: float = 0, warmup: float = 0) -> dict:
    settings = KafkaSettings(bootstrap=bootstrap, partitions=partitions,
                             topic_prefix=f"bench{uuid.uuid4().hex[:6]}.")
    apply(settings)
    codec, ext = AvroCodec(), extent_for(n_fences)
    reg = GeofenceRegistry(settings, GeofenceSettings(max_vertices=100), codec)
    reg.start()
    feats = fence_features(n_fences)
    for i in range(0, len(feats), 5000):
        reg.put_many(feats[i:i + 5000])
    reg.close()
    produce(settings, backlog, 0, n_entities, ext, FLEET_SEED)
    roof = ceiling(settings, codec, backlog, max_batch)
    print(f"{n_fences} fences: ceiling {roof:,.0f} updates/s; {load()}", file=sys.stderr, flush=True)
    workers = [start_worker(settings, str(i), workdir, GEOFLUX_GEOFENCE_MAX_BATCH=str(max_batch),
                            GEOFLUX_STREAM_DATA_DIR=str(workdir / f"state-{settings.topic_prefix}-{i}"))
               for i in range(evaluators)]
    worker = workers[0]
    spy = None
    try:
        wait(lambda: committed_total(settings) > 0, 300, "the evaluator to start")
        t0, c0 = time.monotonic(), committed_total(settings)
        if profile:
            fmt = ["-f", "flamegraph" if profile.endswith(".svg") else "raw"]  # raw: collapsed stacks
            spy = subprocess.Popen(["py-spy", "record", "--nonblocking", "-r", "50", *fmt, "-o", profile,
                                    "--pid", str(worker.pid)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        wait(lambda: committed_total(settings) >= backlog, 900, "the backlog to drain")
        drained = (backlog - c0) / (time.monotonic() - t0)
        print(f"{n_fences} fences: drain {drained:,.0f} updates/s ({drained / roof:.2f} of the "
              f"ceiling); {load()}", file=sys.stderr, flush=True)
        if spy is not None:
            spy.send_signal(2)  # py-spy writes its profile on SIGINT
            spy.wait(60)
        runs = [latency_run(settings, r, seconds, n_entities, ext, FLEET_SEED, churn, n_fences, skip=skip,
                            warmup=warmup)
                for r, skip in zip(rates, feed_offsets(backlog, rates, warmup + seconds))]
        if any(not run["events"] for run in runs) or worker.poll() is not None:
            # a run without events is a stalled or dead evaluator: say why, before its log goes
            tail = (workdir / "evaluator-0.log").read_text(errors="replace").splitlines()[-40:]
            print("the evaluator's log, its last lines:", *tail, sep="\n", file=sys.stderr, flush=True)
        rss, peak = rss_mb(worker.pid)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        for w in workers:
            stop(w)
    floor = []
    if runs:
        every = max(1, round(sum(run["rate"] * seconds for run in runs) / max(1, sum(run["events"] for run in runs))))
        floor = latency_ceiling(settings, rates, seconds, n_entities, ext, max_batch, every, backlog, warmup)
        print(f"{n_fences} fences: latency ceiling measured (one update in {every} forwarded); {load()}",
              file=sys.stderr, flush=True)
    return {"fences": n_fences, "drain": drained, "ceiling": roof, "runs": runs, "floor": floor, "rss": rss,
            "peak": peak, "evaluators": evaluators, "every": every if runs else None}


def scaling(bootstrap: str, args, workdir: Path) -> None:
    fences = int(args.fences.split(",")[0])
    rows = []
    for n in [int(x) for x in args.scaling.split(",")]:
        rows.append(run_one(bootstrap, fences, args.backlog, [], 0, args.partitions, args.entities,
                            workdir, args.max_batch, None, evaluators=n))
        print(f"done: {n} evaluator(s)", file=sys.stderr, flush=True)
    one = rows[0]["drain"] / rows[0]["evaluators"]
    print(f"\nevaluator scaling: {fences} fences, {args.partitions} partitions, backlog {args.backlog:,}, "
          f"batch {args.max_batch}, {os.cpu_count()} cores shared with the broker; {load()} at the end\n")
    print("ceiling: transactional pass-through of the same backlog, one process; linear: the "
          "first row's drain per evaluator times the count\n")
    print(f"{'evaluators':>10} {'ceiling/s':>10} {'drain upd/s':>12} {'of ceiling':>10} {'of linear':>10}")
    for r in rows:
        print(f"{r['evaluators']:>10} {r['ceiling']:>10,.0f} {r['drain']:>12,.0f} "
              f"{r['drain'] / r['ceiling']:>10.2f} {r['drain'] / (one * r['evaluators']):>10.2f}")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fences", default="1000,10000,100000")
    ap.add_argument("--backlog", type=int, default=200_000)
    ap.add_argument("--rates", default="1000,5000,8000,10000")
    ap.add_argument("--seconds", type=float, default=15, help="each paced feed's measured span")
    ap.add_argument("--warmup", type=float, default=GeofenceSettings().allowed_lateness_s,
                    help="seconds each paced feed runs before its updates are measured (default "
                         "the allowed lateness: an entity's state then holds this feed's points only)")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--entities", type=int, default=5000)
    ap.add_argument("--max-batch", type=int, default=GeofenceSettings().max_batch,
                    help="records per transaction, evaluator and ceiling alike")
    ap.add_argument("--profile", help="py-spy profile of the evaluator while it drains: a flame "
                    "graph if it ends in .svg, collapsed stacks otherwise")
    ap.add_argument("--scaling", default="",
                    help="evaluator counts, e.g. 1,2,3: drain the same backlog with each many "
                         "evaluator processes (at the first --fences count) and print how close "
                         "to linear it is; latency runs are skipped")
    ap.add_argument("--churn", type=float, default=0,
                    help="fence edits per second during the latency runs (0: none)")
    ap.add_argument("--smoke", action="store_true",
                    help="100 fences, 3,000 updates of backlog, 200 updates/s for 2 s with 5 fence "
                         "edits/s, batch 500")
    args = ap.parse_args()
    if args.smoke:
        args.fences, args.backlog, args.rates, args.seconds, args.warmup = "100", 3000, "200", 2, 1
        args.entities, args.max_batch, args.churn = 200, 500, 5
    rates = [float(r) for r in args.rates.split(",") if r]
    workdir = Path(tempfile.mkdtemp(prefix="geoflux-bench-"))
    results = []
    try:
        with benchmark_broker(workdir) as bootstrap:
            if args.scaling:
                scaling(bootstrap, args, workdir)
                return
            for n in [int(x) for x in args.fences.split(",")]:
                results.append(run_one(bootstrap, n, args.backlog, rates, args.seconds, args.partitions,
                                       args.entities, workdir, args.max_batch, args.profile,
                                       churn=args.churn, warmup=args.warmup))
                print(f"done: {n} fences", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ngeofence evaluation through Kafka: 1 evaluator, {args.partitions} partitions, "
          f"{args.entities} entities, batch {args.max_batch}, {os.cpu_count()} cores shared with "
          f"broker and load; {load()} at the end\n")
    print("ceiling: transactional pass-through of the same backlog (the shell, its decode, no work)\n")
    print(f"{'fences':>8} {'ceiling/s':>10} {'drain upd/s':>12} {'ratio':>6}")
    for r in results:
        print(f"{r['fences']:>8} {r['ceiling']:>10,.0f} {r['drain']:>12,.0f} {r['drain'] / r['ceiling']:>6.2f}")
    if not rates:
        return
    print("\nlatency ceiling (ceil): the same paced feed through the transactional pass-through in its "
          "own process,\nforwarding unchanged one update in N, N the evaluator's updates per event in the "
          f"same run ({', '.join(str(r['every']) for r in results)}); update produced -> record readable;\n"
          f"each feed runs {args.warmup:g} s before its updates are measured, then {args.seconds:g} s measured;\n"
          f"busy: the machine's cores busy while measured (of {os.cpu_count()}), whoever used them\n")
    print(f"{'fences':>8} {'drain upd/s':>12} {'target/s':>9} {'edits/s':>8} {'achieved/s':>11} {'events':>7} "
          f"{'P50 ms':>7} {'P95 ms':>7} {'P99 ms':>7} {'busy':>5} {'ceil P50':>8} {'ceil P95':>8} {'ceil P99':>8} "
          f"{'ceil busy':>9} {'RSS MB':>7} {'peak MB':>8}")
    for r in results:
        for i, run in enumerate(r["runs"]):
            head = (f"{r['fences']:>8} {r['drain']:>12,.0f}" if i == 0 else f"{'':>8} {'':>12}")
            tail = f" {r['rss']:>7.0f} {r['peak']:>8.0f}" if i == 0 else ""
            ceil = r["floor"][i]
            print(f"{head} {run['rate']:>9,.0f} {run['churn']:>8,.0f} {run['achieved']:>11,.0f} {run['events']:>7} "
                  f"{run['p50']:>7.0f} {run['p95']:>7.0f} {run['p99']:>7.0f} {run['busy']:>5.2f} "
                  f"{ceil['p50']:>8.0f} {ceil['p95']:>8.0f} {ceil['p99']:>8.0f} {ceil['busy']:>9.2f}{tail}")


if __name__ == "__main__":
    main()
