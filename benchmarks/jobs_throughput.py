"""1,000 concurrent geoprocessing jobs through the API (the seed's load target): a script that
prints a table, not a test.

Submits N jobs at once (async, distinct inputs so none is de-duplicated) to a running API
with one job worker, and reports submission throughput, completion throughput, queue wait
(accepted -> started) and end-to-end time (accepted -> finished) P50/P95/P99 per tier.

    python benchmarks/jobs_throughput.py --jobs 1000

Starts its own broker, PostgreSQL (needs the server binaries, as the tests do), API and
worker on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from connectors.kafka_admin import apply  # noqa: E402
from geoflux.settings import KafkaSettings, LocalKafkaSettings  # noqa: E402
from services.local_kafka import LocalKafka  # noqa: E402
from services.local_process import free_port, port_is_open  # noqa: E402
from services.local_postgres import LocalPostgres  # noqa: E402
from tests.integration.geo_helpers import start_api, start_cli, stop  # noqa: E402


def job_inputs(i: int) -> tuple[str, dict]:
    x, y = (i * 0.37) % 170 - 85, (i * 0.11) % 80 - 40
    square = {"type": "Polygon", "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]]}
    if i % 4 == 3:  # a quarter run in PostGIS (forced by process)
        return "area-length", {"geometry": square}
    return "buffer", {"geometry": square, "distance_m": 100 + i}


async def submit_all(base: str, n: int) -> list[str]:
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> str:
            pid, inputs = job_inputs(i)
            async with session.post(f"{base}/processes/{pid}/execution", json={"inputs": inputs},
                                    headers={"Prefer": "respond-async"}) as r:
                assert r.status == 201, await r.text()
                return (await r.json())["jobID"]
        return await asyncio.gather(*(one(i) for i in range(n)))


async def poll_done(base: str, ids: list[str], timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"{base}/jobs?limit=1000&offset=0") as r:
                page = await r.json()
            total = page["total"]
            jobs = page["jobs"]
            for off in range(1000, total, 1000):
                async with session.get(f"{base}/jobs?limit=1000&offset={off}") as r:
                    jobs += (await r.json())["jobs"]
            wanted = {j["jobID"]: j for j in jobs if j["jobID"] in set(ids)}
            if len(wanted) == len(ids) and all(j["status"] in ("successful", "failed") for j in wanted.values()):
                return list(wanted.values())
            await asyncio.sleep(0.5)
    raise SystemExit("jobs did not finish in time")


def ms(iso: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def q(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geoflux-jbench-"))
    broker = LocalKafka(LocalKafkaSettings(data_dir=work / "kafka", port=free_port(),
                                           controller_port=free_port(), heap="1g"))
    pg_root = Path(f"/tmp/geoflux-jbench-pg-{uuid.uuid4().hex[:6]}")
    pg_root.mkdir()
    pg = LocalPostgres(pg_root, free_port())
    pg.start()
    bootstrap = broker.start()
    settings = KafkaSettings(bootstrap=bootstrap, topic_prefix="jb.")
    apply(settings)
    port = free_port()
    env = {"GEOFLUX_PG_DSN": pg.dsn(), "GEOFLUX_JOBS_TIERS": json.dumps({"area-length": "postgis"}),
           "GEOFLUX_JOBS_CONCURRENCY": str(args.concurrency)}
    procs = [start_api(settings, port, work, **env),
             start_cli(settings, ["worker", "jobs"], "jobs", work, **env)]
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not port_is_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(5)  # the worker joins its group
        t0 = time.monotonic()
        ids = asyncio.run(submit_all(base, args.jobs))
        t_submit = time.monotonic() - t0
        done = asyncio.run(poll_done(base, ids, 1800))
        t_all = time.monotonic() - t0
    finally:
        for p in procs:
            stop(p)
        broker.stop()
        pg.stop()
    print(f"\n{args.jobs} concurrent jobs via the API, 1 worker x {args.concurrency} slots, "
          f"{os.cpu_count()} cores shared with broker, PostgreSQL and API\n")
    print(f"submitted in {t_submit:.1f} s ({args.jobs / t_submit:.0f} jobs/s accepted); all finished in "
          f"{t_all:.1f} s ({args.jobs / t_all:.1f} jobs/s); failed: "
          f"{sum(1 for j in done if j['status'] != 'successful')}\n")
    print(f"{'tier':<10} {'jobs':>5} {'wait P50':>9} {'P95':>7} {'P99':>7} {'e2e P50':>8} {'P95':>7} {'P99':>7}  (seconds)")
    for tier in ("inprocess", "postgis"):
        rows = [j for j in done if j["tier"] == tier and j["started"]]
        wait = [(ms(j["started"]) - ms(j["created"])) / 1000 for j in rows]
        e2e = [(ms(j["finished"]) - ms(j["created"])) / 1000 for j in rows if j["finished"]]
        print(f"{tier:<10} {len(rows):>5} {q(wait, .5):>9.2f} {q(wait, .95):>7.2f} {q(wait, .99):>7.2f} "
              f"{q(e2e, .5):>8.2f} {q(e2e, .95):>7.2f} {q(e2e, .99):>7.2f}")


if __name__ == "__main__":
    main()
