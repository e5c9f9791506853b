"""N concurrent geoprocessing jobs through the API, against the ceiling of the same pipeline
with no compute: a script that prints a table, not a test.

Two runs on one broker, each with its own API and one job worker (default slots, 4):

    ceiling    every job routed to the no-op tier (connectors/compute/noop.py): API, the
               submission transaction, Kafka, the worker's bookkeeping, statuses and results,
               and nothing else
    in-process the same jobs on the in-process tier (the warm pool of worker processes)

Each submits N jobs at once (async, distinct inputs so none is de-duplicated) and waits for
all to finish; reported: submission rate, completion rate (jobs/s from the first submission
to the last finish), queue wait (accepted -> started) and end-to-end (accepted -> finished)
P50/P95, and in-process jobs/s as a share of the ceiling. `--postgis-share` routes a share of
the jobs to PostGIS (starts PostgreSQL; the server binaries must be installed).

    python benchmarks/jobs_throughput.py --jobs 1000
    python benchmarks/jobs_throughput.py --smoke        # 20 jobs, both runs at once: the script works, no figures

Starts its own broker unless GEOFLUX_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._postgres import benchmark_postgres  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from geoflux.settings import KafkaSettings  # noqa: E402
from services.devstack.local_process import free_port, port_is_open  # noqa: E402
from tests.integration.geo_helpers import OPERATOR_KEY, start_api, start_cli, stop  # noqa: E402

AUTH = {"Authorization": f"Bearer {OPERATOR_KEY}"}
TARGET_S = 30.0  # the target for 1,000 trivial jobs on one worker (issue 17)


def job_inputs(i: int, postgis_every: int) -> tuple[str, dict]:
    x, y = (i * 0.37) % 170 - 85, (i * 0.11) % 80 - 40
    square = {"type": "Polygon", "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]]}
    if postgis_every and i % postgis_every == postgis_every - 1:
        return "area-length", {"geometry": square}  # forced onto PostGIS by the run's settings
    return "buffer", {"geometry": square, "distance_m": 100 + i}


async def submit_all(base: str, n: int, postgis_every: int) -> list[str]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async def one(i: int) -> str:
            pid, inputs = job_inputs(i, postgis_every)
            async with session.post(f"{base}/processes/{pid}/execution", json={"inputs": inputs},
                                    headers={"Prefer": "respond-async"}) as r:
                if r.status != 201:
                    raise SystemExit(f"submission refused: HTTP {r.status} {await r.text()}")
                return (await r.json())["jobID"]
        return await asyncio.gather(*(one(i) for i in range(n)))


async def poll_done(base: str, ids: list[str], timeout_s: float) -> list[dict]:
    wanted = set(ids)
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(headers=AUTH) as session:
        while time.monotonic() < deadline:
            jobs, offset = {}, 0
            while True:
                async with session.get(f"{base}/jobs?limit=1000&offset={offset}") as r:
                    page = await r.json()
                jobs.update({j["jobID"]: j for j in page["jobs"] if j["jobID"] in wanted})
                offset += 1000
                if offset >= page["total"]:
                    break
            if len(jobs) == len(ids) and all(j["status"] in ("successful", "failed") for j in jobs.values()):
                return list(jobs.values())
            await asyncio.sleep(0.2)
    raise SystemExit("jobs did not finish in time")


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def q(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def one_run(label: str, bootstrap: str, work: Path, n: int, slots: int, env: dict,
            postgis_every: int) -> dict:
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"jb{os.getpid()}-{label}.")
    apply(settings)
    port = free_port()
    env = {"GEOFLUX_JOBS_CONCURRENCY": str(slots), "GEOFLUX_OBJECT_STORE_URL": (work / f"objects-{label}").as_uri(),
           "GEOFLUX_STREAM_DATA_DIR": str(work / f"state-{label}"), **env}
    worker_args = ["worker", "jobs"] + ([] if postgis_every else ["--no-postgis"])
    procs = [start_api(settings, port, work, **env), start_cli(settings, worker_args, f"jobs-{label}", work, **env)]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not port_is_open("127.0.0.1", port):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"{label}: the API or the worker did not start; logs in {work}")
            time.sleep(0.2)
        asyncio.run(warm_up(base))
        t0 = time.monotonic()
        ids = asyncio.run(submit_all(base, n, postgis_every))
        t_submit = time.monotonic() - t0
        done = asyncio.run(poll_done(base, ids, 1800))
        t_all = time.monotonic() - t0
    finally:
        for p in procs:
            stop(p)
    return {"label": label, "submit_s": t_submit, "all_s": t_all, "jobs": done,
            "failed": sum(1 for j in done if j["status"] != "successful")}


async def warm_up(base: str) -> None:
    """One job first: once it is done the worker has joined its group and started its pool."""
    hull = {"geometry": {"type": "MultiPoint", "coordinates": [[0, 0], [1, 0], [0, 1]]}}
    async with aiohttp.ClientSession(headers=AUTH) as session:
        async with session.post(f"{base}/processes/convex-hull/execution", json={"inputs": hull},
                                headers={"Prefer": "respond-async"}) as r:
            job_id = (await r.json())["jobID"]
    await poll_done(base, [job_id], 120)


def _times(runs: list[dict]) -> str:
    return ", ".join(f"{r['all_s']:.1f}" for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4, help="the worker's slots (GEOFLUX_JOBS_CONCURRENCY)")
    ap.add_argument("--postgis-share", type=float, default=0.0, help="share of jobs run in PostGIS")
    ap.add_argument("--repeat", type=int, default=2,
                    help="runs of each, alternating; the fastest of each is reported (the machine is shared)")
    ap.add_argument("--smoke", action="store_true", help="20 jobs, one run each: checks the script works")
    args = ap.parse_args()
    n = 20 if args.smoke else args.jobs
    postgis_every = round(1 / args.postgis_share) if args.postgis_share else 0
    work = Path(tempfile.mkdtemp(prefix="geoflux-jbench-"))
    pg = benchmark_postgres() if postgis_every else nullcontext(None)
    with benchmark_broker(work) as bootstrap, pg as dsn:
        env = {"GEOFLUX_PG_DSN": dsn} if dsn else {}
        noop = {**env, "GEOFLUX_JOBS_TIERS": json.dumps({"buffer": "noop", "area-length": "noop"})}
        real_env = {**env, "GEOFLUX_JOBS_TIERS": json.dumps({"area-length": "postgis"} if postgis_every else {})}
        ceilings, reals = [], []
        if args.smoke:  # both at once: a smoke run's figures mean nothing, its wall time counts in CI
            with ThreadPoolExecutor(2) as pool:
                runs = [pool.submit(one_run, label, bootstrap, work, n, args.concurrency, e, postgis_every)
                        for label, e in (("noop0", noop), ("real0", real_env))]
                ceilings, reals = [runs[0].result()], [runs[1].result()]
        for r in range(0 if args.smoke else args.repeat):  # alternating: both see the same noise
            ceilings.append(one_run(f"noop{r}", bootstrap, work, n, args.concurrency, noop, postgis_every))
            reals.append(one_run(f"real{r}", bootstrap, work, n, args.concurrency, real_env, postgis_every))
        ceiling = min(ceilings, key=lambda x: x["all_s"])
        real = min(reals, key=lambda x: x["all_s"])
    failed = any(r["failed"] for r in ceilings + reals)
    if not failed:
        shutil.rmtree(work, ignore_errors=True)  # logs are kept only when something failed
    print(f"\n{n:,} concurrent jobs via the API, 1 worker x {args.concurrency} slots, {os.cpu_count()} cores "
          f"shared with the broker{', PostgreSQL' if postgis_every else ''} and the API; the fastest of {len(reals)} "
          f"run(s) of each (all done, s: ceiling {_times(ceilings)}; in-process {_times(reals)})\n")
    print(f"{'run':<22} {'submit/s':>9} {'all done s':>11} {'jobs/s':>8} {'failed':>7} "
          f"{'wait P50':>9} {'P95':>6} {'e2e P50':>8} {'P95':>6}  (seconds)")
    for name, r in (("ceiling (no-op tier)", ceiling), ("in-process tier" + (" + PostGIS" if postgis_every else ""), real)):
        rows = [j for j in r["jobs"] if j["started"]]
        wait = [(ms(j["started"]) - ms(j["created"])) / 1000 for j in rows]
        e2e = [(ms(j["finished"]) - ms(j["created"])) / 1000 for j in rows if j["finished"]]
        print(f"{name:<22} {n / r['submit_s']:>9.0f} {r['all_s']:>11.1f} {n / r['all_s']:>8.1f} "
              f"{r['failed']:>7} {q(wait, .5):>9.2f} {q(wait, .95):>6.2f} {q(e2e, .5):>8.2f} {q(e2e, .95):>6.2f}")
    ratio = (n / real["all_s"]) / (n / ceiling["all_s"])
    print(f"\nin-process / ceiling: {ratio:.2f}; {n:,} jobs finished in {real['all_s']:.1f} s "
          f"(target for 1,000: {TARGET_S:.0f} s)")
    if failed:
        raise SystemExit("some jobs failed: see the worker logs in " + str(work))


if __name__ == "__main__":
    main()
