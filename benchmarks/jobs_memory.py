"""RSS of an API process following N finished job statuses, against the code before the jobs
view (every status and result in a dict): a script that prints a table, not a test.

Writes N successful JobStatus records (20 tenants, idempotency keys) onto `jobs.status` with
a plain producer, then starts `geoflux api` from this tree and from the baseline commit
(`git archive`, default b2e7947, the last commit with statuses in memory; its 60 s limit
on loading a topic is raised so that it can start at all), each once on an
empty namespace (the floor: every other reader of the API) and once on the N statuses.
Reported: start time (the API answers once every topic it follows is read), RSS, RSS above
the floor per status, GET /jobs/{id} and GET /jobs?limit=100 latency.

    python benchmarks/jobs_memory.py --statuses 1000000
    python benchmarks/jobs_memory.py --smoke          # seconds; current tree only

Starts its own broker unless GEOFLUX_KAFKA_BOOTSTRAP is set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._broker import benchmark_broker  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from geoflux.settings import KafkaSettings  # noqa: E402
from services.devstack.local_process import free_port, port_is_open  # noqa: E402

KEY = "bench-operator-key-000000"


WRITER = """
import hashlib, sys, time
from confluent_kafka import Producer
from connectors.kafka_config import producer_config
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec

settings = KafkaSettings(bootstrap=sys.argv[1], topic_prefix=sys.argv[2])
n = int(sys.argv[3])
t = topic("jobs.status", settings)
codec = AvroCodec()
producer = Producer(producer_config(settings, **{"linger.ms": 50, "batch.size": 1_000_000}))
now = int(time.time() * 1000)
for i in range(n):
    job_id = f"{i:08d}-0000-4000-8000-{i:012d}"
    created = now - (n - i) * 10
    rec = {"job_id": job_id, "tenant_id": f"tenant-{i % 20}", "process_id": "buffer",
           "status": "successful", "progress": 100, "message": "done", "tier": "inprocess",
           "attempt": 1, "created_ms": created, "started_ms": created + 2, "finished_ms": created + 5,
           "updated_ms": created + 5, "priority": 5, "idempotency_header": None,
           "idempotency_key": "auto:" + hashlib.sha256(job_id.encode()).hexdigest()}
    while True:
        try:
            producer.produce(t, key=job_id, value=codec.encode(t, "JobStatus", rec))
            break
        except BufferError:
            producer.poll(0.05)
    if i % 10_000 == 0:
        producer.poll(0)
if producer.flush(120):
    raise SystemExit("statuses not acknowledged")
"""


def write_statuses(tree: Path, settings: KafkaSettings, n: int) -> float:
    """Written by the tree's own codec: each version reads records of its own schema (the
    baseline predates fields added since; registry-less ids are per schema version)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", WRITER, settings.bootstrap, settings.topic_prefix, str(n)],
                   cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def get(url: str) -> tuple[float, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.loads(resp.read())
    return (time.perf_counter() - t0) * 1000, body


def measure(tree: Path, settings: KafkaSettings, work: Path, label: str, n: int) -> dict:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "GEOFLUX_KAFKA_BOOTSTRAP": settings.bootstrap,
           "GEOFLUX_KAFKA_TOPIC_PREFIX": settings.topic_prefix, "GEOFLUX_API_PORT": str(port),
           "GEOFLUX_API_KEYS": json.dumps({KEY: "*"}), "GEOFLUX_LOG_LEVEL": "WARNING",
           "GEOFLUX_STREAM_DATA_DIR": str(work / f"state-{label}"),
           "GEOFLUX_OBJECT_STORE_URL": (work / "objects").as_uri()}
    log = open(work / f"api-{label}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "api"], cwd=tree, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        while not port_is_open("127.0.0.1", port):
            if proc.poll() is not None:
                return {"label": label, "error": f"exited {proc.returncode}; see {log.name}"}
            if time.monotonic() - started > 1800:
                return {"label": label, "error": "not answering after 30 min"}
            time.sleep(0.2)
        start_s = time.monotonic() - started
        base = f"http://127.0.0.1:{port}"
        _, page = get(f"{base}/jobs?limit=1")
        time.sleep(2)  # let allocations settle after the load
        rss = rss_mb(proc.pid)
        one = [get(f"{base}/jobs/{i * 7919 % max(n, 1):08d}-0000-4000-8000-{i * 7919 % max(n, 1):012d}")[0]
               for i in range(100)] if n else []
        lists = [get(f"{base}/jobs?limit=100&offset={i * 100}")[0] for i in range(20)] if n else []
        return {"label": label, "start_s": start_s, "rss_mb": rss, "total": page["total"],
                "get_ms": statistics.median(one) if one else None,
                "list_ms": statistics.median(lists) if lists else None}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def baseline_tree(repo: Path, commit: str, work: Path) -> Path:
    """The baseline's code. Its topic readers give up after 60 s of loading, which a million
    statuses take longer than on two shared cores: raised here so its memory can be measured
    at all (the limit is not what is compared)."""
    tree = work / f"tree-{commit[:10]}"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    reader = tree / "connectors" / "topic_reader.py"
    reader.write_text(reader.read_text().replace("timeout_s: float = 60.0", "timeout_s: float = 3600.0"))
    return tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--statuses", type=int, default=1_000_000)
    ap.add_argument("--baseline-commit", default="b2e7947")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the git checkout the baseline is taken from")
    ap.add_argument("--smoke", action="store_true", help="2,000 statuses, this tree only, no floor")
    args = ap.parse_args()
    n = 2000 if args.smoke else args.statuses
    work = Path(tempfile.mkdtemp(prefix="geoflux-jmem-"))
    with benchmark_broker(work) as bootstrap:
        trees = [("this tree", ROOT)]
        if not args.smoke:
            trees.append((f"baseline {args.baseline_commit}", baseline_tree(args.repo, args.baseline_commit, work)))
        rows = []
        for k, (name, tree) in enumerate(trees):
            full = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"jm{os.getpid()}-{k}.")
            apply(full)
            write_s = write_statuses(tree, full, n)
            floor = None
            if not args.smoke:
                empty = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"jm{os.getpid()}-{k}e.")
                apply(empty)
                floor = measure(tree, empty, work, f"{k}-empty", 0)
            rows.append((name, floor, measure(tree, full, work, f"{k}-full", n)))
    if not [x for _, floor, row in rows for x in (floor, row) if x and "error" in x]:
        shutil.rmtree(work, ignore_errors=True)  # logs are kept only when something failed
    print(f"\nAPI process following {n:,} finished job statuses ({write_s:.1f} s to write them); "
          f"{os.cpu_count()} cores shared with the broker\n")
    print(f"{'code':<20} {'start s':>8} {'RSS MB':>8} {'floor MB':>9} {'above floor':>12} "
          f"{'B/status':>9} {'GET job ms':>11} {'list ms':>8}")
    for name, floor, row in rows:
        if "error" in row:
            print(f"{name:<20} failed: {row['error']}")
            continue
        assert row["total"] == n, f"{name}: the API lists {row['total']} jobs, not {n}"
        above = row["rss_mb"] - floor["rss_mb"] if floor and "rss_mb" in floor else None
        print(f"{name:<20} {row['start_s']:>8.1f} {row['rss_mb']:>8.0f} "
              f"{floor['rss_mb'] if floor and 'rss_mb' in floor else float('nan'):>9.0f} "
              f"{above if above is not None else float('nan'):>12.0f} "
              f"{(above * 1024 * 1024 / n) if above is not None else float('nan'):>9.0f} "
              f"{row['get_ms'] or float('nan'):>11.1f} {row['list_ms'] or float('nan'):>8.1f}")


if __name__ == "__main__":
    main()
