"""Fence churn: geofences edited while points are evaluated (issue 17, target 2).

The evaluator's fence index (`streams/fence_index.py`) on its own, with the evaluator's batch
shape: every batch queries its points and, before that, applies the fence edits that arrived
since the previous batch. 10,000 updates/s with 100 edits/s is, at 1,000 points per batch, 10
edits per batch. Three ways are timed in the same run, on the same fences, points and edits:

  ceiling      the same queries with no edits at all: what the points cost by themselves
  incremental  edits go to the index of recent edits beside the bulk tree (today's index)
  rebuild      the whole tree rebuilt on every batch with an edit (the index before it)

Per-batch wall time, P50 and P95, and the updates/s a batch's time allows; pure CPU, no broker.

    python benchmarks/fence_churn.py                      # 10k and 100k fences
    python benchmarks/fence_churn.py --smoke              # 2,000 fences, a few batches
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapely.geometry import box  # noqa: E402

import streams.fence_index as fi  # noqa: E402
from benchmarks.geofence_throughput import extent_for  # noqa: E402
from streams.fence_index import FenceIndex  # noqa: E402
from streams.geofence import FenceSpec, build_fence  # noqa: E402


def a_fence(i: int, version: int, rnd: random.Random, ext: float):
    x, y = rnd.uniform(0, ext), rnd.uniform(0, ext)
    w, h = rnd.uniform(0.005, 0.04), rnd.uniform(0.005, 0.04)
    return build_fence(f"g{i}", version, FenceSpec(box(x, y, x + w, y + h), f"g{i}", "bench"))


def run(n_fences: int, batches: int, points: int, edits: int, how: str) -> list[float]:
    rnd, ext = random.Random(1), extent_for(n_fences)
    index = FenceIndex()
    for i in range(n_fences):
        index.upsert(a_fence(i, 1, rnd, ext))
    index.zones([0.0], [0.0])  # the first build is not a batch's cost
    saved = fi.REBUILD_MIN, fi.REBUILD_FRACTION
    if how == "rebuild":
        fi.REBUILD_MIN, fi.REBUILD_FRACTION = -1, 0.0  # every edit invalidates the tree
    try:
        prnd, erand, version = random.Random(2), random.Random(3), 1
        took = []
        for _ in range(batches):
            lons = [prnd.uniform(0, ext) for _ in range(points)]
            lats = [prnd.uniform(0, ext) for _ in range(points)]
            changes = []
            if how != "ceiling":
                version += 1
                changes = [a_fence(erand.randrange(n_fences), version, erand, ext) for _ in range(edits)]
            t0 = time.perf_counter()
            for f in changes:
                index.upsert(f)
            index.zones(lons, lats)
            took.append(time.perf_counter() - t0)
        return took
    finally:
        fi.REBUILD_MIN, fi.REBUILD_FRACTION = saved


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[18] if len(xs) >= 20 else max(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fences", default="10000,100000")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--points", type=int, default=1000, help="points per batch")
    ap.add_argument("--edits", type=int, default=10, help="fence edits per batch")
    ap.add_argument("--smoke", action="store_true", help="2,000 fences, 20 batches")
    args = ap.parse_args()
    if args.smoke:
        args.fences, args.batches = "2000", 20
    rows = []
    for n in [int(x) for x in args.fences.split(",")]:
        for how in ("ceiling", "incremental", "rebuild"):
            took = run(n, args.batches, args.points, args.edits, how)
            rows.append((n, how, statistics.median(took), p95(took)))
            print(f"done: {n} fences, {how}", file=sys.stderr, flush=True)
    print(f"\nfence churn: {args.points} points and {args.edits} fence edits per batch, {args.batches} "
          f"batches; pure CPU, one core of {os.cpu_count()}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("ceiling: the same batches' queries with no edits; upd/s: points per batch over the P95 batch\n")
    print(f"{'fences':>8} {'index':>12} {'P50 ms':>8} {'P95 ms':>8} {'upd/s at P95':>13} {'P95 / ceiling':>14}")
    ceilings = {n: p for n, how, _m, p in rows if how == "ceiling"}
    for n, how, med, p in rows:
        print(f"{n:>8} {how:>12} {med * 1000:>8.2f} {p * 1000:>8.2f} {args.points / p:>13,.0f} "
              f"{p / ceilings[n]:>14.2f}")


if __name__ == "__main__":
    main()
