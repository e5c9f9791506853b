"""The evaluator's own CPU per location update, without a broker: a script, not a test.

What runs is the stage's real code on real Avro records: the shell's decode of each record
(`TransactionalProcessor._decode`), `EvaluatorStage.process` (fence index, membership machine,
events encoded) and the commit's local work (each changed state encoded for the changelog, its
index keys, the RocksDB write of the batch). What is simulated: the producer only counts the
records it is handed, and there is no transaction, so this is the CPU a stage spends besides
librdkafka and the broker. CPU time (not wall time) is reported, so a busy machine disturbs
it less; still, compare figures taken in the same conditions.

Event time advances `--every-ms` between one entity's updates, and every entity's lateness
window is filled before timing: the size of the states written (printed) is what it would be
in a live feed at that cadence, and what a state write costs grows with it.

The ceiling compared with: the shell's decode of the same records alone (the part of the work
every stage does and no evaluator change can avoid). The evaluator is timed twice, batch about
batch: with the cyclic collector's thresholds a worker sets (`GEOFLUX_STREAM_GC_THRESHOLD`) and
with Python's default ones.

    python benchmarks/evaluator_cpu.py --fences 10000 --updates 60000
    python benchmarks/evaluator_cpu.py --smoke      # seconds: the script works, figures mean nothing
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.geofence_throughput import Fleet, extent_for, fence_features  # noqa: E402
from geoflux.settings import GeofenceSettings, KafkaSettings, StreamSettings  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from streams.evaluator import EvaluatorStage  # noqa: E402
from streams.geofence import build_fence, parse_feature  # noqa: E402
from streams.runtime.txn_processor import Txn  # noqa: E402
from streams.state.table import META_PREFIX  # noqa: E402

PARTITIONS = 6
PYTHON_DEFAULT_GC = (700, 10, 10)


class CountingProducer:
    """Simulated: takes the records a transaction would carry and only counts them."""

    def __init__(self) -> None:
        self.n = 0

    def produce(self, *_args, **_kwargs) -> None:
        self.n += 1

    def poll(self, *_args) -> int:
        return 0

    def flush(self, *_args) -> int:
        return 0


class Msg:
    """What confluent-kafka's consume returns, for the fields the shell reads."""

    __slots__ = ("_t", "_p", "_o", "_k", "_v")

    def __init__(self, t: str, p: int, o: int, k: bytes, v: bytes) -> None:
        self._t, self._p, self._o, self._k, self._v = t, p, o, k, v

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v

    def error(self) -> None:
        return None


def commit_locally(ev: EvaluatorStage, txn: Txn) -> None:
    """The local half of the shell's commit: changelog values, index keys, store writes."""
    changes = ev.changelog_changes(txn)
    ev._open = None
    ev.apply_committed(txn, changes, {p: 1 for p in changes})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fences", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=60_000)
    ap.add_argument("--entities", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=GeofenceSettings().max_batch)
    ap.add_argument("--every-ms", type=int, default=500,
                    help="event time between one entity's updates (500: 5,000 entities at 10,000 "
                         "updates/s, as in geofence_throughput's latency run); it sets how many "
                         "points an entity's lateness window holds, so the size of each state written")
    ap.add_argument("--smoke", action="store_true", help="100 fences, 200 entities, 2,000 updates, batch 200")
    args = ap.parse_args()
    if args.smoke:
        args.fences, args.entities, args.updates, args.batch = 100, 200, 2000, 200
    geo = GeofenceSettings()
    # every entity's window is full before timing: the states written are of their steady size
    rounds = int(geo.allowed_lateness_s * 1000) // max(1, args.every_ms) + 2
    warm = args.entities * (2 if args.smoke else rounds)
    tmp = Path(tempfile.mkdtemp(prefix="geoflux-evcpu-"))
    codec = AvroCodec()
    ev = EvaluatorStage(KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="cpu.", partitions=PARTITIONS),
                   geo, codec, state=StreamSettings(data_dir=tmp))
    try:
        ev.producer = CountingProducer()
        for feature, fid in fence_features(args.fences):
            ev.index.upsert(build_fence(fid, 1, parse_feature(feature, max_vertices=100)))
        for p in range(PARTITIONS):
            ev._table_for(p)
            ev.ready.add(p)
        fleet, msgs = Fleet(args.entities, extent_for(args.fences), 1), []
        total = warm + args.updates
        start_ms = int(time.time() * 1000) - (total // args.entities + 1) * args.every_ms
        for i in range(total):
            entity, lon, lat, _wall = fleet.next()
            ts = start_ms + (i // args.entities) * args.every_ms
            value = codec.encode(ev.t_locations, "LocationUpdate", {
                "entity_id": entity, "tenant_id": "bench", "lon": lon, "lat": lat, "ts_ms": ts,
                "attributes": {}, "produced_ms": ts})
            msgs.append(Msg(ev.t_locations, zlib.crc32(entity.encode()) % PARTITIONS, i, entity.encode(), value))

        def decode_only(part: list) -> None:
            for i in range(0, len(part), args.batch):
                ev._decode(part[i:i + args.batch], Txn())

        def evaluate(part: list) -> None:
            for i in range(0, len(part), args.batch):
                evaluate_batch(part[i:i + args.batch])

        def evaluate_batch(batch: list) -> None:
            txn = ev._open = Txn()
            ev._touched = {}
            ev.process(ev._decode(batch, txn), txn)
            commit_locally(ev, txn)

        StreamSettings().apply_gc_threshold()
        evaluate(msgs[:warm])
        timed = msgs[warm:]
        written = ev.changelog_changes

        def measured_changes(txn, on_delivery=None):
            changes = written(txn, on_delivery)
            for items in changes.values():
                for k, v, _i in items:
                    if v is not None:
                        (chunks if k.startswith(META_PREFIX) else sizes).append(len(v))
            return changes

        sizes: list[int] = []  # the entities' own records
        chunks: list[int] = []  # their history chunks (streams/entity_history.py)
        ev.changelog_changes = measured_changes
        rows = []
        t0 = time.process_time()
        decode_only(timed)
        cpu = time.process_time() - t0
        rows.append(("ceiling: the shell's decode alone", cpu * 1e6 / len(timed), len(timed) / cpu))
        # the two collector settings take turns batch by batch, so both see the same load and
        # equally grown state; each batch holds updates neither has seen
        spent, counted = [0.0, 0.0], [0, 0]
        settings = (gc.get_threshold(), PYTHON_DEFAULT_GC)
        for n, i in enumerate(range(0, len(timed), args.batch)):
            gc.set_threshold(*settings[n % 2])
            batch = timed[i:i + args.batch]
            t0 = time.process_time()
            evaluate_batch(batch)
            spent[n % 2] += time.process_time() - t0
            counted[n % 2] += len(batch)
        gc.set_threshold(*settings[0])
        for which, label in ((0, f"evaluator, the workers' collector {settings[0]}"),
                             (1, f"evaluator, Python's default collector {settings[1]}")):
            rows.append((label, spent[which] * 1e6 / counted[which], counted[which] / spent[which]))
    finally:
        ev.consumer.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nevaluator CPU per update: {args.fences:,} fences, {args.entities:,} entities, "
          f"{len(timed):,} updates timed (half with each collector), batch {args.batch}, "
          f"{args.every_ms} ms of event time between an entity's updates; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
    print(f"{'what':<62} {'us/update':>10} {'updates/CPU-s':>14} {'vs ceiling':>11}")
    for label, us, rate in rows:
        print(f"{label:<62} {us:>10.1f} {rate:>14,.0f} {rate / rows[0][2]:>11.2f}")
    print(f"\nevents emitted: {ev.stats.events:,}; records handed to the (counting) producer: {ev.producer.n:,}; "
          f"states written while timed: {len(sizes):,}, {sum(sizes) / max(1, len(sizes)):,.0f} bytes each on average, "
          f"and {len(chunks):,} history chunks, {sum(chunks) / max(1, len(sizes)):,.0f} bytes a state on average")


if __name__ == "__main__":
    main()
