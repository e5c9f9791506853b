"""What keeping every update of the allowed lateness costs the evaluator, per update, in CPU
time: placing it (`MembershipMachine.apply`) and writing the entity's state for the changelog,
by how often an entity reports. A script that prints a table, not a test.

    python benchmarks/entity_history.py [--fences 1000] [--lateness-s 30]
    python benchmarks/entity_history.py --smoke     # seconds: the script works, figures mean nothing

The ceiling compared with: 10,000 updates/s on one evaluator core, i.e. 100 us per update for
everything (decoding, index, events, transaction). "chunked" is what the evaluator writes: the
entity's record with the newest chunk of its history, and the older chunks that changed
(`streams/entity_history.py`); "whole" the record with the whole window in it, as written
before chunks; "as records" the same window as an Avro array of point records (the changelog's
older `history` field). Bytes are per update; the chunked ones include the chunks'.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fastavro  # noqa: E402
from shapely.geometry import box  # noqa: E402

from schemas.codec import schema_text  # noqa: E402
from streams.evaluator_records import chunk_record, state_to_record  # noqa: E402
from streams.fence_index import FenceIndex  # noqa: E402
from streams.geofence import FenceSpec, build_fence  # noqa: E402
from streams.membership import EntityState, MembershipMachine, Update  # noqa: E402

CEILING_US = 100.0  # everything an update may cost at 10,000 updates/s on one core
SCHEMA = fastavro.parse_schema(json.loads(schema_text("EntityState")))


def fence_index(n: int) -> tuple[FenceIndex, float]:
    rnd, ext, idx = random.Random(1), (n / 1000) ** 0.5, FenceIndex()
    for i in range(n):
        x, y = rnd.uniform(0, ext), rnd.uniform(0, ext)
        w, h = rnd.uniform(0.005, 0.04), rnd.uniform(0.005, 0.04)
        idx.upsert(build_fence(f"g{i}", 1, FenceSpec(box(x, y, x + w, y + h), f"g{i}", "b")))
    return idx, ext


def as_records(rec: dict, state: EntityState) -> dict:
    return dict(rec, history=[{"ts_ms": s.ts_ms, "lon": s.lon, "lat": s.lat,
                               "inside": list(s.inside)} for s in state.history])


def encode(rec: dict) -> int:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, rec)
    return buf.tell()


def measure(idx: FenceIndex, ext: float, lateness_ms: int, step_ms: int, updates: int) -> dict:
    kept = lateness_ms // step_ms + 2
    entities = max(20, updates // (3 * kept))
    machine, rnd = MembershipMachine(idx, lateness_ms), random.Random(2)
    pos = [[rnd.uniform(0, ext), rnd.uniform(0, ext)] for _ in range(entities)]
    states = [EntityState(f"e{k}", "b") for k in range(entities)]
    rounds = 3 * kept  # the first third fills the window: measured are the last two
    ups = []
    for r in range(rounds):
        for k, p in enumerate(pos):
            p[0] += rnd.uniform(-1, 1) * 0.003
            p[1] += rnd.uniform(-1, 1) * 0.003
            ups.append((r, k, p[0], p[1], 1_764_000_000_000 + r * step_ms))
    zones = idx.zones([u[2] for u in ups], [u[3] for u in ups])
    t = {"apply": 0.0, "columns": 0.0, "chunked": 0.0, "records": 0.0}
    size = {"columns": 0, "chunked": 0, "records": 0}
    n = 0
    for (r, k, x, y, ts), z in zip(ups, zones):
        c0 = time.process_time()
        machine.apply(states[k], Update(f"e{k}", "b", x, y, ts), z)
        c1 = time.process_time()
        rec = state_to_record(states[k])
        nbytes = encode(rec)
        c2 = time.process_time()
        split = states[k].history.split()
        chunked_bytes = sum(encode(chunk_record(states[k], a, b)) for _, a, b in split.write)
        chunked_bytes += encode(state_to_record(states[k], chunked=True))
        c3 = time.process_time()
        if r < kept:
            continue
        legacy = as_records(rec, states[k])
        c4 = time.process_time()
        legacy_bytes = encode(legacy)
        c5 = time.process_time()
        t["apply"] += c1 - c0
        t["columns"] += c2 - c1
        t["chunked"] += c3 - c2
        t["records"] += c5 - c4
        size["columns"] += nbytes
        size["chunked"] += chunked_bytes
        size["records"] += legacy_bytes
        n += 1
    h = states[0].history
    memory = sum(sys.getsizeof(c) for c in (h.ts, h.lon, h.lat, h.inside)) / len(h)
    return {"rate": 1000 / step_ms, "kept": len(h), "apply": t["apply"] / n * 1e6,
            "columns": t["columns"] / n * 1e6, "chunked": t["chunked"] / n * 1e6,
            "records": t["records"] / n * 1e6, "bytes": size["columns"] / n,
            "chunked_bytes": size["chunked"] / n, "record_bytes": size["records"] / n, "memory": memory}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fences", type=int, default=1000)
    ap.add_argument("--lateness-s", type=float, default=30.0)
    ap.add_argument("--updates", type=int, default=40_000, help="updates placed per reporting rate")
    ap.add_argument("--smoke", action="store_true", help="100 fences, lateness 2 s, 1,000 updates per rate")
    args = ap.parse_args()
    if args.smoke:
        args.fences, args.lateness_s, args.updates = 100, 2.0, 1000
    idx, ext = fence_index(args.fences)
    lateness_ms = int(args.lateness_s * 1000)
    print(f"\nper update, CPU time, {args.fences} fences, lateness {args.lateness_s:g} s; ceiling: "
          f"{CEILING_US:.0f} us for everything at 10,000 updates/s on one core; "
          "of ceiling: (apply + chunked) / ceiling\n")
    print(f"{'reports/s':>9} {'points':>6} {'apply us':>8} {'chunked us':>10} {'bytes':>6} {'of ceiling':>10} "
          f"{'whole us':>8} {'bytes':>6} {'as records us':>13} {'bytes':>6} {'memory B/point':>14}")
    for step in (5000, 1000, 500, 100):
        r = measure(idx, ext, lateness_ms, step, args.updates)
        share = (r["apply"] + r["chunked"]) / CEILING_US
        print(f"{r['rate']:>9.1f} {r['kept']:>6} {r['apply']:>8.1f} {r['chunked']:>10.1f} {r['chunked_bytes']:>6.0f} "
              f"{share:>10.2f} {r['columns']:>8.1f} {r['bytes']:>6.0f} {r['records']:>13.1f} "
              f"{r['record_bytes']:>6.0f} {r['memory']:>14.1f}")


if __name__ == "__main__":
    main()
