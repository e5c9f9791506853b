"""The audit sink, measured: a script that prints a table, not a test.

Pre-loads a backlog of N geofence events (spread over 3 days, so 3 partitions), then for each
batch size starts one `geoflux worker audit` (its own consumer group and table) and times how
fast it drains the backlog into PostgreSQL: rows/s from the first row to the last (the sink's
sustained rate) and from process start (including start-up and group join).

    python benchmarks/audit_sink.py --events 50000 --batch-sizes 500,2000,5000
    python benchmarks/audit_sink.py --smoke     # seconds: the script works, figures mean nothing

The ceiling compared with, in the same run: one read_committed consumer reading and decoding
the backlog, nothing written (the sink's work before PostgreSQL); the ratio is rows/s steady
over it.

Everything runs on this machine: broker, PostgreSQL and the sink share its cores. Starts its
own broker and PostgreSQL unless GEOFLUX_KAFKA_BOOTSTRAP / GEOFLUX_PG_DSN name existing ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from benchmarks._broker import benchmark_broker  # noqa: E402
from benchmarks._ceiling import read_topic  # noqa: E402
from benchmarks._postgres import benchmark_postgres  # noqa: E402

from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_producer import ReliableProducer  # noqa: E402
from geoflux.settings import KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from tests.integration.geo_helpers import start_cli, stop  # noqa: E402

BASE_MS = 1_735_689_600_000
DAY_MS = 86_400_000


def publish(settings: KafkaSettings, n: int) -> float:
    codec, t = AvroCodec(), topic("geo.geofence-events", settings)
    producer = ReliableProducer(settings, **{"queue.buffering.max.messages": 1_000_000})
    t0 = time.perf_counter()
    for i in range(n):
        rec = {"event_id": f"ev-{i}", "event_type": ("ENTER", "EXIT")[i % 2],
               "entity_id": f"truck-{i % 5000}", "geofence_id": f"zone-{i % 1000}",
               "geofence_version": 1, "tenant_id": f"tenant-{i % 10}",
               "lon": 13.0 + (i % 1000) / 1000, "lat": 52.0 + (i % 777) / 1000,
               "ts_ms": BASE_MS + (i % 3) * DAY_MS + i, "source": f"loc:{i}", "reason": None,
               "produced_ms": None, "attributes": {"speed": str(i % 90)}}
        producer.send(t, codec.encode(t, "GeofenceEvent", rec), key=rec["geofence_id"])
    producer.flush_or_raise(120)
    return time.perf_counter() - t0


def read_ceiling(settings: KafkaSettings, n: int) -> float:
    """Records/s: the backlog read and decoded by one consumer, nothing written."""
    codec, t = AvroCodec(), topic("geo.geofence-events", settings)
    seconds, seen = read_topic(settings, t, lambda m: codec.decode(m.value(), "GeofenceEvent"))
    if seen != n:
        raise SystemExit(f"the ceiling's read saw {seen} of {n} records")
    return n / seconds


def count(dsn: str, table: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except psycopg.Error:
        return 0


def drain(settings: KafkaSettings, dsn: str, n: int, batch: int, work: Path, run: str) -> dict:
    table = f"bench_audit_{run}_{batch}"  # a PostgreSQL shared with other runs keeps their tables
    env = {"GEOFLUX_PG_DSN": dsn, "GEOFLUX_AUDIT_TABLE": table,
           "GEOFLUX_AUDIT_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}",
           "GEOFLUX_AUDIT_BATCH_SIZE": str(batch)}
    t_start = time.monotonic()
    proc = start_cli(settings, ["worker", "audit"], f"audit-{batch}", work, **env)
    first = last = None
    deadline = t_start + 600
    try:
        while time.monotonic() < deadline:
            c = count(dsn, table)
            if c and first is None:
                first = (time.monotonic(), c)
            if c >= n:
                last = time.monotonic()
                break
            time.sleep(0.05)  # polling the table: the measurement's resolution
    finally:
        stop(proc)
    if last is None:
        raise SystemExit(f"batch {batch}: only {count(dsn, table)} of {n} rows after 600 s")
    with psycopg.connect(dsn) as conn:
        total, distinct = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone()
        size = conn.execute("SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i "
                            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                            (table,)).fetchone()[0]
    steady = (n - first[1]) / (last - first[0]) if last > first[0] and first[1] < n else float("nan")
    return {"batch": batch, "table": table, "rows": total, "distinct": distinct, "steady": steady,
            "overall": n / (last - t_start), "elapsed": last - t_start, "size": size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch-sizes", default="500,2000,5000")
    ap.add_argument("--smoke", action="store_true", help="2,000 events, batches 500 and 2,000")
    args = ap.parse_args()
    if args.smoke:
        args.events, args.batch_sizes = 2000, "500,2000"
    work = Path(tempfile.mkdtemp(prefix="geoflux-abench-"))
    run = uuid.uuid4().hex[:6]
    results = []
    with benchmark_broker(work) as bootstrap, benchmark_postgres() as dsn:
        settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"ab{run}.")
        apply(settings)
        t_pub = publish(settings, args.events)
        roof = read_ceiling(settings, args.events)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            results.append(drain(settings, dsn, args.events, batch, work, run))
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
            for r in results:
                conn.execute(f"DROP TABLE IF EXISTS {r['table']} CASCADE")
    print(f"\naudit sink: {args.events:,} geofence events (backlog, 3 daily partitions) -> PostgreSQL "
          f"{version} + PostGIS, 1 sink process, {settings.partitions} partitions, "
          f"{os.cpu_count()} cores shared with broker and PostgreSQL "
          f"(backlog published in {t_pub:.1f} s)\n")
    print(f"ceiling: the backlog read and decoded by one consumer, nothing written: {roof:,.0f} records/s; "
          "ratio: rows/s steady over it\n")
    print(f"{'batch':>6} {'rows':>8} {'distinct':>9} {'rows/s steady':>14} {'ratio':>6} {'rows/s from start':>18} "
          f"{'elapsed s':>10} {'table size':>11}")
    for r in results:
        print(f"{r['batch']:>6} {r['rows']:>8,} {r['distinct']:>9,} {r['steady']:>14,.0f} {r['steady'] / roof:>6.2f} "
              f"{r['overall']:>18,.0f} {r['elapsed']:>10.1f} {r['size']:>11}")

if __name__ == "__main__":
    main()
