"""The audit sink under faults: SIGKILL mid-burst, PostgreSQL down for 30 s mid-burst.

Afterwards the table holds every published record exactly once (compared with the list of
what this test published, not with anything the sink computed), and the undecodable
records are in `audit.dlq` with their error class.
"""

import time
import uuid

import psycopg
import pytest

from connectors.kafka_producer import ReliableProducer
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event
from connectors.topic_reader import TopicReader
from tests.integration.geo_helpers import kill, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

DAY_MS = 86_400_000
N_EVENTS = 6000
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00Z: three days of partitions below


def events(lo: int, hi: int) -> list[dict]:
    out = []
    for i in range(lo, hi):
        e = geofence_event(i, tenant="acme" if i % 2 else "globex", geofence=f"zone-{i % 7}")
        e["ts_ms"] = BASE_MS + (i % 3) * DAY_MS + i
        out.append(e)
    return out


def cep_match(i: int) -> dict:
    return {"match_id": f"m-{i}", "pattern_id": "p", "pattern_version": 1, "tenant_id": "acme",
            "key": f"truck-{i}", "severity": "high", "event_ids": [], "start_ms": BASE_MS,
            "end_ms": BASE_MS + i, "detail": {"kind": "sequence"}}


def job_status(i: int) -> dict:
    return {"job_id": f"job-{i // 3}", "tenant_id": "acme", "process_id": "buffer",
            "status": ("accepted", "running", "successful")[i % 3], "progress": (0, 10, 100)[i % 3],
            "message": None, "tier": None, "attempt": 1, "created_ms": BASE_MS,
            "started_ms": None, "finished_ms": None, "updated_ms": BASE_MS + 1000 + i,
            "idempotency_key": "", "priority": 5}


def alert_status(i: int) -> dict:
    return {"alert_id": f"alert-{i // 2}", "tenant_id": "globex", "status": ("PENDING", "SENT")[i % 2],
            "channels": {}, "attempts": {}, "last_errors": {}, "fallback_of": {}, "reason": None,
            "rule_id": "r", "severity": "info", "title": "", "created_ms": BASE_MS,
            "delivered_ms": None, "delivered_by": {}, "updated_ms": BASE_MS + 2000 + i}


class Publisher:
    def __init__(self, settings, codec: AvroCodec) -> None:
        self.settings, self.codec = settings, codec
        self.producer = ReliableProducer(settings)
        self.ids: set[str] = set()  # geofence events and CEP matches
        self.status_keys: set[tuple[str, str, int]] = set()  # (kind, subject, updated_ms)

    def send(self, logical: str, schema: str, rec: dict, key: str) -> None:
        t = topic(logical, self.settings)
        self.producer.send(t, self.codec.encode(t, schema, rec), key=key)

    def burst(self, lo: int, hi: int) -> None:
        for e in events(lo, hi):
            self.send("geo.geofence-events", "GeofenceEvent", e, e["geofence_id"])
            self.ids.add(e["event_id"])
        for i in range(lo // 40, hi // 40):  # 1 in 40: CEP matches and both kinds of status
            m, j, a = cep_match(i), job_status(i), alert_status(i)
            self.send("geo.cep-matches", "CepMatch", m, m["key"])
            self.send("jobs.status", "JobStatus", j, j["job_id"])
            self.send("alerts.status", "AlertStatus", a, a["alert_id"])
            self.ids.add(m["match_id"])
            self.status_keys |= {("job_status", j["job_id"], j["updated_ms"]),
                                 ("alert_status", a["alert_id"], a["updated_ms"])}
        self.producer.flush_or_raise()

    @property
    def expected(self) -> int:
        return len(self.ids) + len(self.status_keys)


def rows(dsn: str, table: str) -> int:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except psycopg.Error:
        return -1  # not created yet, or the database is down


def test_every_record_lands_exactly_once_through_sigkill_and_a_pg_outage(
        kafka_settings, postgres, postgres_dsn, tmp_path):
    codec, table = AvroCodec(), f"audit_{uuid.uuid4().hex[:8]}"
    env = {"GEOFLUX_PG_DSN": postgres_dsn, "GEOFLUX_AUDIT_TABLE": table,
           "GEOFLUX_AUDIT_BATCH_SIZE": "500", "GEOFLUX_AUDIT_BACKOFF_S": "[0.2, 0.5, 1, 2]",
           "GEOFLUX_AUDIT_CONNECT_TIMEOUT_S": "2", "PYTHONUNBUFFERED": "1"}
    pub = Publisher(kafka_settings, codec)
    sink = start_cli(kafka_settings, ["worker", "audit"], "audit-1", tmp_path, **env)
    try:
        # undecodable records: dead-lettered with their class, never dropped, never a crash
        bad_topic = topic("geo.geofence-events", kafka_settings)
        pub.producer.send(bad_topic, b"not avro at all", key="zone-0")
        pub.producer.send(topic("jobs.status", kafka_settings), b"\x00\x00\x00\x00\x01junk", key="j")
        pub.burst(0, 2000)

        # SIGKILL while it is writing: somewhere between the first and the last batch
        wait_for(lambda: rows(postgres_dsn, table) > 0, 60, what="the sink's first rows")
        kill(sink)  # more of the burst follows, so what it had not committed is re-read
        pub.burst(2000, 4000)
        sink = start_cli(kafka_settings, ["worker", "audit"], "audit-2", tmp_path, **env)
        wait_for(lambda: rows(postgres_dsn, table) > 2000, 60, what="the restarted sink writing")

        # PostgreSQL away for 30 s while the rest of the burst arrives
        postgres.stop()
        try:
            pub.burst(4000, N_EVENTS)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the deliberate outage
                assert sink.poll() is None, "the sink died while PostgreSQL was down"
                time.sleep(0.5)
        finally:
            postgres.start()
        wait_for(lambda: rows(postgres_dsn, table) >= pub.expected, 90, interval_s=0.5,
                 what=f"all {pub.expected} records in the table")
        assert sink.poll() is None

        with psycopg.connect(postgres_dsn) as conn:
            total, distinct = conn.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone()
            ids = {r[0] for r in conn.execute(
                f"SELECT id FROM {table} WHERE kind IN ('geofence_event', 'cep_match')")}
            statuses = {(k, p.get("job_id") or p.get("alert_id"), p["updated_ms"]) for k, p in conn.execute(
                f"SELECT kind, payload FROM {table} WHERE kind IN ('job_status', 'alert_status')")}
            days = conn.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = %s::regclass",
                                (table,)).fetchone()[0]
        assert total == distinct == pub.expected
        assert ids == pub.ids and statuses == pub.status_keys
        assert days == 3  # one partition per UTC day of the records

        # the DLQ is written before the offsets are committed: it is complete by now (a
        # record re-read after the SIGKILL may be in it twice, under the same dlq_id)
        dead: dict[str, dict] = {}
        TopicReader(kafka_settings, topic("audit.dlq", kafka_settings), "DlqRecord", codec,
                    lambda _k, rec, _m: dead.update({rec["dlq_id"]: rec}) or True).load().close()
        assert {(d["original_topic"], d["error_class"]) for d in dead.values()} == \
            {(bad_topic, "undecodable"), (topic("jobs.status", kafka_settings), "undecodable")}
        assert all(d["error_message"] and d["original_value"] for d in dead.values())
    finally:
        stop(sink)
