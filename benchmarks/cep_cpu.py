"""The CEP entity and geofence stages' own CPU per event, without a broker: a script, not a test.

What runs is the stages' real code on real Avro records (the workload of
`benchmarks/cep_throughput.py`: walkers entering and leaving fences, the same 100 patterns):
the shell's decode of each record (`TransactionalProcessor._decode`), `CepStage.process`
(pattern index, event-time buffers, kinds, outputs encoded), one `tick` per batch (timers)
and the commit's local work (each changed state encoded for the changelog, its timer index
entry, the RocksDB write of the batch), with the workers' collector thresholds (until
2026-11-30 it ran with Python's default ones, which the workers do not use). What is
simulated: the producer only counts the records it is handed, there is no transaction, and the
input clock a tick runs on is the slowest partition's newest event time (every partition busy, as in a backlog drain). CPU time
(not wall time) is reported, so a busy machine disturbs it less; still, compare figures taken
in the same conditions.

The ceiling compared with: the shell's decode of the same records alone (the part of the work
every stage does and no CEP change can avoid).

    python benchmarks/cep_cpu.py --events 40000
    python benchmarks/cep_cpu.py --smoke      # seconds: the script works, figures mean nothing
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cep_throughput import Walkers, patterns  # noqa: E402
from benchmarks.evaluator_cpu import CountingProducer, Msg, commit_locally  # noqa: E402
from geoflux.settings import KafkaSettings, StreamSettings  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from streams.cep.patterns import parse_pattern  # noqa: E402
from streams.cep.stage import MAX_BATCH, CepStage  # noqa: E402
from streams.runtime.txn_processor import Txn  # noqa: E402

PARTITIONS = 6


def stage_for(mode: str, tmp: Path, codec: AvroCodec, docs: list[dict]) -> CepStage:
    st = CepStage(KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="cpu.", partitions=PARTITIONS),
                  codec, mode)
    st.state_settings = StreamSettings(data_dir=tmp / mode)
    st.producer = CountingProducer()
    for i, doc in enumerate(docs):
        p = parse_pattern(doc, None, 1)
        if p.keyed_by == mode:
            st.patterns[str(i)] = p
    for p in range(PARTITIONS):
        st._table_for(p)
        st.ready.add(p)
    # simulated: every input partition busy, the clock at the slowest one's newest event
    st.input_clock = lambda _wall: min((ts for ts, _seen in st.partition_clock.values()), default=None)
    return st


def run(st: CepStage, msgs: list, batch: int) -> None:
    for i in range(0, len(msgs), batch):
        txn = st._open = Txn()
        st._touched = {}
        st.tick(txn)
        st.process(st._decode(msgs[i:i + batch], txn), txn)
        commit_locally(st, txn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--patterns", type=int, default=100)
    ap.add_argument("--fences", type=int, default=1000)
    ap.add_argument("--mix", choices=("identical", "distinct"), default="identical")
    ap.add_argument("--batch", type=int, default=MAX_BATCH)
    ap.add_argument("--smoke", action="store_true", help="2,000 events, 300 entities, 20 patterns, 50 fences")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.entities, args.patterns, args.fences, args.batch = 2000, 300, 20, 50, 500
    StreamSettings().apply_gc_threshold()  # as `geoflux worker cep` does before it starts
    tmp = Path(tempfile.mkdtemp(prefix="geoflux-cepcpu-"))
    codec = AvroCodec()
    docs = patterns(args.patterns, args.fences, args.mix)
    stages = {m: stage_for(m, tmp, codec, docs) for m in ("entity", "geofence")}
    try:
        walkers = Walkers(args.entities, args.fences)
        t0 = 1_790_000_000_000  # fixed: the same windows close in every run (a backlog: long past)
        msgs: dict[str, list] = {"entity": [], "geofence": []}
        for i in range(args.events):
            e = walkers.next(t0 + i * 5)
            for mode, st in stages.items():
                key = f"t/{e['entity_id']}" if mode == "entity" else e["geofence_id"]
                value = codec.encode(st.t_events, "GeofenceEvent", e)
                msgs[mode].append(Msg(st.t_events, zlib.crc32(key.encode()) % PARTITIONS, i, key.encode(), value))
        warm = len(msgs["entity"]) // 5  # state exists for most keys before timing
        rows = []
        for mode, st in stages.items():
            run(st, msgs[mode][:warm], args.batch)
            timed = msgs[mode][warm:]
            t0c = time.process_time()
            for i in range(0, len(timed), args.batch):
                st._decode(timed[i:i + args.batch], Txn())
            decode = time.process_time() - t0c
            before = st.producer.n
            t0c = time.process_time()
            run(st, timed, args.batch)
            cpu = time.process_time() - t0c
            rows.append((mode, len(timed), decode * 1e6 / len(timed), cpu * 1e6 / len(timed),
                         len(timed) / cpu, st.producer.n - before))
    finally:
        for st in stages.values():
            st.consumer.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nCEP CPU per event: {args.events:,} events, {args.entities:,} entities, {args.patterns} patterns "
          f"({args.mix}), {args.fences:,} fences, batch {args.batch}; load average "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
    print(f"{'stage':<9} {'events':>7} {'decode us (ceiling)':>20} {'stage us/event':>15} {'events/CPU-s':>13} "
          f"{'records out':>12}")
    for mode, n, dec, us, rate, out in rows:
        print(f"{mode:<9} {n:>7,} {dec:>20.1f} {us:>15.1f} {rate:>13,.0f} {out:>12,}")
    both = sum(r[3] for r in rows)
    print(f"\nentity + geofence: {both:.1f} us/event = {1e6 / both:,.0f} events per CPU-second "
          "(the re-key and the broker not included)")


if __name__ == "__main__":
    main()
