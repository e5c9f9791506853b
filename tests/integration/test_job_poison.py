"""Poison records on the job worker's inputs: random bytes, truncated Avro, an unknown schema
id, another schema's record and an empty value, on `jobs.requests` and `jobs.retry` among real
jobs. Every real job finishes once; every bad record is on `jobs.dlq` with its bytes, key,
error class and stage, and counted in `geoflux_dlq_records_total`; the worker never stops."""

import os
import struct
import urllib.request

import pytest

from connectors.kafka_producer import ReliableProducer
from connectors.object_store import open_object_store
from connectors.topic_reader import TopicReader
from geoflux.settings import JobSettings, ObjectStoreSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.jobs import JobsService
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import start_cli, stop
from tests.samples import SAMPLES

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def read_all(settings, logical, schema):
    out = []
    reader = TopicReader(settings, topic(logical, settings), schema, AvroCodec(),
                         lambda k, rec, msg: out.append((k, rec)) or True)
    try:
        reader.load()
    finally:
        reader.close()
    return out


def metric(port, name, **labels) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_poison_records_go_to_the_dlq_and_real_jobs_finish_once(kafka_settings, tmp_path):
    codec = AvroCodec()
    objects = (tmp_path / "objects").as_uri()
    metrics_port = free_port()
    worker = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis", "--metrics-port", str(metrics_port)],
                       "jobs", tmp_path, GEOFLUX_OBJECT_STORE_URL=objects)
    svc = JobsService(kafka_settings, codec, JobSettings(),
                      objects=open_object_store(ObjectStoreSettings(url=objects)),
                      stream=StreamSettings(data_dir=tmp_path / "state")).start()
    t_req, t_retry = topic("jobs.requests", kafka_settings), topic("jobs.retry", kafka_settings)
    valid = codec.encode(t_req, "JobRequest", SAMPLES["JobRequest"])
    garbage = [
        (t_req, b"\x07" + os.urandom(60), b"random"),  # not the wire format at all
        (t_req, valid[: len(valid) // 2], b"truncated"),  # a real request cut short
        (t_retry, b"\x00" + struct.pack(">I", 123456789) + valid[5:], b"unknown-id"),  # no such schema
        (t_retry, codec.encode(t_retry, "JobStatus", SAMPLES["JobStatus"]), b"other-schema"),
        (t_req, None, b"empty"),  # a tombstone where requests go
        (t_retry, os.urandom(3), None),  # no key either
    ]
    producer = ReliableProducer(kafka_settings)
    try:
        jobs = []
        for i in range(12):
            if i % 2 == 0:  # garbage among the jobs, on both input topics
                t, value, key = garbage[i // 2]
                producer.deliver([(t, value, key)])
            square = {"type": "Polygon", "coordinates": [[[0, 0], [1 + i, 0], [1 + i, 1], [0, 1], [0, 0]]]}
            jobs.append(svc.submit("convex-hull", {"geometry": square}, tenant_id="acme")[0]["job_id"])
        wait_for(lambda: all(svc.get(j)["status"] == "successful" for j in jobs), 120,
                 what="every real job successful")
        wait_for(lambda: len(read_all(kafka_settings, "jobs.dlq", "DlqRecord")) >= len(garbage), 60,
                 what="every poison record dead-lettered")
        dlq = [rec for _, rec in read_all(kafka_settings, "jobs.dlq", "DlqRecord")]
        assert len(dlq) == len(garbage)
        assert sorted(((r["original_topic"], r["original_value"], r["original_key"]) for r in dlq), key=repr) == \
            sorted(garbage, key=repr)
        assert {(r["error_class"], r["stage"]) for r in dlq} == {("undecodable", "jobs")}
        assert all(r["error_message"] and r["redrive_topic"] == r["original_topic"] for r in dlq)
        # each real job ran once: one "running" and one "successful" status, on attempt 1
        statuses = [rec for _, rec in read_all(kafka_settings, "jobs.status", "JobStatus")]
        for j in jobs:
            mine = [s for s in statuses if s["job_id"] == j]
            assert [s["status"] for s in mine].count("successful") == 1, mine
            assert {s["attempt"] for s in mine if s["status"] != "accepted"} == {1}
        assert worker.poll() is None, "the worker stopped"
        assert port_is_open("127.0.0.1", metrics_port)
        assert metric(metrics_port, "geoflux_dlq_records_total", stage="jobs",
                      error_class="undecodable") == len(garbage)
    finally:
        svc.close()
        stop(worker)
