"""REST evaluation under load, measured: `POST /api/v1/geoevent/evaluate` (one location per
request) at a fixed concurrency, through the durable stream (the API writes the update to
`geo.locations`, the evaluator evaluates it in a transaction, the API answers from its record
on `geo.evaluations`). Prints requests/s, status counts and latency P50/P95/P99.

Before anything is measured, `--warmup-s` seconds of the same evaluate requests warm the
whole path, as a service that has been up for a while is warm: the broker this script starts
spends about half its CPU in its first ~25 s of this load compiling (its JIT threads), and the
stages open their state. The CPU table shows what the broker's JIT threads still used during
each measured run.

The ceiling, measured in the same run with the same client and concurrency: the same POST
with a latitude out of range, which the same API answers 422 after the same key check, JSON
parse and validation, before the stream: the HTTP stack and the client with none of the
evaluate path's Kafka work. The ratio says what going through the stream costs.

    python benchmarks/rest_evaluate.py --requests 20000 --concurrency 100,500
    python benchmarks/rest_evaluate.py --api-workers 2    # API processes sharing the port
    python benchmarks/rest_evaluate.py --requests 20000 --concurrency 100 --profile /tmp/api.svg
        (py-spy samples the first API process while the evaluate run goes)
    python benchmarks/rest_evaluate.py --warmup-s 0    # cold: a broker started seconds ago
    python benchmarks/rest_evaluate.py --smoke     # seconds: the script works, figures mean nothing

Everything runs on this machine: broker, evaluator, API and the load generator (one process,
aiohttp) share its cores; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shapely.geometry import box, mapping  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._cpu import broker_pids, cpu_s, jit_cpu_s, machine_busy_s  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from geoflux.settings import ApiSettings, KafkaSettings  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.devstack.local_process import free_port, port_is_open  # noqa: E402
from tests.integration.geo_helpers import TENANT_KEYS, publish_fences, start_api, start_worker, stop  # noqa: E402

TENANT = "t"  # requests are made with this tenant's key, as a tenant's client would
EXTENT = 1.0  # degrees: fences and entities in the same square


def fences(n: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        x, y = rnd.uniform(0, EXTENT), rnd.uniform(0, EXTENT)
        w, h = rnd.uniform(0.02, 0.1), rnd.uniform(0.02, 0.1)
        out.append({"type": "Feature", "id": f"g{i}", "geometry": mapping(box(x, y, x + w, y + h)),
                    "properties": {"name": f"g{i}", "tenant_id": TENANT}})
    return out


def bodies(n: int, entities: int, valid: bool, seed: int = 2, end_now: bool = False) -> list[bytes]:
    """Request bodies made up front: the client's time goes to HTTP, not to building them.
    Timestamps strictly increase per entity (one base, +1 ms per request), as a live feed's do;
    `end_now`: the last one is now, so a later set's timestamps are all newer (the warm-up's)."""
    rnd, base = random.Random(seed), int(time.time() * 1000) - (n if end_now else 0)
    return [json.dumps({"entity_id": f"e{i % entities}", "lon": rnd.uniform(0, EXTENT),
                        "lat": rnd.uniform(0, EXTENT) if valid else 95.0,
                        "timestamp": base + i}).encode() for i in range(n)]


async def drive(url: str, key: str, payloads: list[bytes], concurrency: int,
                for_s: float | None = None) -> dict:
    """Every payload once (or until `for_s` seconds have passed), `concurrency` at a time."""
    statuses: Counter = Counter()
    latencies: list[float] = []
    it = iter(payloads)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:

        until = time.perf_counter() + for_s if for_s is not None else float("inf")

        async def one_client() -> None:
            for body in it:  # every client takes the next body: N requests in all
                if time.perf_counter() > until:
                    return
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    statuses[type(exc).__name__] += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    q = (lambda p: 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))])
    return {"n": len(latencies), "rps": len(latencies) / elapsed, "statuses": dict(statuses),
            "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "load": os.getloadavg()[0]}


def warm_up(url: str, key: str, timeout: float = 120) -> None:
    """Until one evaluate answers 200: the evaluator has its partitions and the fences."""
    deadline = time.monotonic() + timeout
    # an entity of its own: a newer timestamp of a measured entity would make the warm-up's late
    payload = json.dumps({"entity_id": "ready-probe", "lon": 0.5, "lat": 0.5,
                          "timestamp": int(time.time() * 1000)}).encode()
    while time.monotonic() < deadline:
        r = asyncio.run(drive(url, key, [payload] * 5, 5))
        if r["statuses"].get(200) == 5:
            return
        time.sleep(0.5)  # the evaluator is still starting; asking again
    raise SystemExit(f"no 200 from {url} within {timeout:.0f}s: {r['statuses']}")


def api_pids(api: subprocess.Popen) -> list[int]:
    """The API process and its children (the processes sharing the port, if any)."""
    out = subprocess.run(["pgrep", "-P", str(api.pid)], capture_output=True, text=True).stdout
    return [api.pid, *(int(p) for p in out.split())]


def measured(pids: dict[str, list[int]], work) -> dict:
    """Runs `work()` and adds the CPU milliseconds per request of each process group, of this
    process (the client) and of the whole machine to its result."""
    before = {name: cpu_s(p) for name, p in pids.items()}
    client0, machine0, jit0 = time.process_time(), machine_busy_s(), jit_cpu_s(pids["broker"])
    result = work()
    result["cpu_ms"] = {name: 1000 * (cpu_s(p) - before[name]) / result["n"] for name, p in pids.items()}
    result["cpu_ms"]["jit"] = 1000 * (jit_cpu_s(pids["broker"]) - jit0) / result["n"]
    result["cpu_ms"]["client"] = 1000 * (time.process_time() - client0) / result["n"]
    result["cpu_ms"]["machine"] = 1000 * (machine_busy_s() - machine0) / result["n"]
    return result


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000, help="per concurrency, evaluate and ceiling each")
    ap.add_argument("--concurrency", default="100,500")
    ap.add_argument("--warmup-s", type=float, default=60, help="seconds of evaluate requests at the "
                    "first concurrency before anything is measured (not counted)")
    ap.add_argument("--fences", type=int, default=1000)
    ap.add_argument("--entities", type=int, default=5000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--api-workers", type=int, default=None,
                    help="API processes sharing the port (GEOFLUX_API_WORKERS; default: its default)")
    ap.add_argument("--profile", help="py-spy flame graph (.svg) of the first API process during "
                    "the first evaluate run")
    ap.add_argument("--profile-evaluator", help="the same, of the evaluator")
    ap.add_argument("--smoke", action="store_true", help="20 fences, 200 requests at concurrency 10")
    args = ap.parse_args()
    if args.smoke:
        args.requests, args.concurrency, args.fences, args.entities, args.warmup_s = 200, "10", 20, 50, 1
    levels = [int(c) for c in args.concurrency.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="geoflux-restbench-"))
    rows = []
    try:
        with benchmark_broker(workdir) as bootstrap:
            settings = KafkaSettings(bootstrap=bootstrap, partitions=args.partitions,
                                     topic_prefix=f"rest{uuid.uuid4().hex[:6]}.")
            apply(settings)
            publish_fences(settings, fences(args.fences), AvroCodec()).close()
            port = free_port()
            env = {"GEOFLUX_STREAM_DATA_DIR": str(workdir / "state")}
            if args.api_workers:
                env["GEOFLUX_API_WORKERS"] = str(args.api_workers)
            worker = api = None
            spies: list[subprocess.Popen] = []
            try:
                worker = start_worker(settings, "0", workdir, GEOFLUX_STREAM_DATA_DIR=str(workdir / "ev"))
                api = start_api(settings, port, workdir, **env)
                deadline = time.monotonic() + 120
                while not port_is_open("127.0.0.1", port):
                    if time.monotonic() > deadline or api.poll() is not None:
                        raise SystemExit("the API did not start; see " + str(workdir / "api.log"))
                    time.sleep(0.2)  # polling the port
                url = f"http://127.0.0.1:{port}/api/v1/geoevent/evaluate"
                key = TENANT_KEYS[TENANT]
                warm_up(url, key)
                workers = args.api_workers or getattr(ApiSettings(), "workers", 1)  # older trees: 1
                pids = {"api": api_pids(api), "evaluator": [worker.pid], "broker": broker_pids()}
                warmed = {"n": 0, "statuses": {}}
                if args.warmup_s > 0:  # bodies for up to 4,000 requests/s; the clock stops it first
                    warmed = asyncio.run(drive(url, key, bodies(int(args.warmup_s * 4000), args.entities, True,
                                                                seed=1, end_now=True), levels[0], args.warmup_s))
                print(f"warm-up: {warmed['n']:,} requests in {args.warmup_s:.0f}s at concurrency {levels[0]} "
                      f"{warmed['statuses']}; {load()}", file=sys.stderr, flush=True)
                for i, c in enumerate(levels):
                    ceiling = measured(pids, lambda: asyncio.run(
                        drive(url, key, bodies(args.requests, args.entities, False), c)))
                    print(f"concurrency {c}: ceiling {ceiling['rps']:,.0f}/s {ceiling['statuses']}; {load()}",
                          file=sys.stderr, flush=True)
                    for path, pid in ((args.profile, api_pids(api)[-1]), (args.profile_evaluator, worker.pid)):
                        if path and i == 0:
                            spies.append(subprocess.Popen(
                                ["py-spy", "record", "--nonblocking", "-r", "50", "-f",
                                 "flamegraph" if path.endswith(".svg") else "raw", "-o", path, "--pid", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    run = measured(pids, lambda: asyncio.run(
                        drive(url, key, bodies(args.requests, args.entities, True, seed=3 + i), c)))
                    for spy in spies:
                        spy.send_signal(2)  # py-spy writes its profile on SIGINT
                        spy.wait(60)
                    spies = []
                    print(f"concurrency {c}: evaluate {run['rps']:,.0f}/s {run['statuses']}; {load()}",
                          file=sys.stderr, flush=True)
                    rows.append((c, ceiling, run))
            finally:
                for spy in spies:
                    if spy.poll() is None:
                        spy.kill()
                        spy.wait()
                for proc in (api, worker):
                    if proc is not None:
                        stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nREST evaluate, one location per request, through the durable stream: {args.fences} fences, "
          f"{args.entities} entities, {args.partitions} partitions, {workers} API process(es), 1 evaluator; "
          f"{os.cpu_count()} cores shared with broker and load generator; {load()} at the end\n")
    print(f"warm-up, not counted: {warmed['n']:,} evaluate requests in {args.warmup_s:.0f} s at concurrency "
          f"{levels[0]} ({' '.join(f'{k}:{v}' for k, v in sorted(warmed['statuses'].items(), key=str))})\n")
    print("ceiling: the same POST with a latitude out of range (422 after the key check, JSON parse "
          "and validation, before the stream), same client and concurrency\n")
    print(f"{'conc':>5} {'requests':>8} {'ceiling/s':>10} {'eval req/s':>10} {'ratio':>6} "
          f"{'P50 ms':>7} {'P95 ms':>7} {'P99 ms':>7} {'ceil P95':>8} {'load':>5}  statuses")
    for c, ceiling, run in rows:
        print(f"{c:>5} {run['n']:>8} {ceiling['rps']:>10,.0f} {run['rps']:>10,.0f} "
              f"{run['rps'] / ceiling['rps']:>6.2f} {run['p50']:>7.0f} {run['p95']:>7.0f} "
              f"{run['p99']:>7.0f} {ceiling['p95']:>8.0f} {run['load']:>5.2f}  "
              + " ".join(f"{k}:{v}" for k, v in sorted(run["statuses"].items(), key=str)))
    cores = os.cpu_count() or 1
    print("\nCPU milliseconds per request (user + system, whatever else the machine runs); machine: "
          "every core's busy time over the run,\nwhoever spent it; broker JIT: the part of the broker's that "
          "its JIT compiler threads spent; ceiling for issue 17's 2,000 "
          f"requests/s: {cores} cores / 2,000 = {1000 * cores / 2000:.2f} ms of machine time a request\n")
    print(f"{'conc':>5} {'run':>9} {'API':>6} {'evaluator':>9} {'broker':>6} {'broker JIT':>10} {'client':>6} "
          f"{'machine':>7} {'of 2,000/s':>10}")
    for c, ceiling, run in rows:
        for name, r in (("ceiling", ceiling), ("evaluate", run)):
            ms = r["cpu_ms"]
            print(f"{c:>5} {name:>9} {ms['api']:>6.2f} {ms['evaluator']:>9.2f} {ms['broker']:>6.2f} "
                  f"{ms['jit']:>10.2f} {ms['client']:>6.2f} {ms['machine']:>7.2f} {ms['machine'] * 2000 / (1000 * cores):>10.2f}")


if __name__ == "__main__":
    main()
