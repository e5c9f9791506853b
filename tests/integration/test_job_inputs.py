"""Large job inputs: staged in the object store with a reference on the topic, so 2.5 MB and
15 MB inputs (and one at the limit) complete; the limit is one number, answered with a 413
and its reason one byte past it; and a submission that cannot be written leaves nothing
behind: no status, no quota used, no staged object."""

import json
import time

import pytest
from confluent_kafka.admin import AdminClient

from connectors.topic_reader import TopicReader
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, start_cli, stop
from tests.integration.job_inputs import line_of_size

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ACME = TENANT_KEYS["acme"]
LIMIT = 16 * 1024 * 1024  # GEOFLUX_JOBS_MAX_INPUT_BYTES, the default


def execute(base, inputs, pid="area-length", key=ACME, raw_body=None):
    return http("POST", f"{base}/processes/{pid}/execution",
                raw_body if raw_body is not None else {"inputs": inputs}, timeout=120, key=key,
                headers={"Prefer": "respond-async"})


def committed(settings, logical, schema):
    """Every record a read_committed reader sees on the topic now: (key, record)."""
    out = []
    reader = TopicReader(settings, topic(logical, settings), schema, AvroCodec(),
                         lambda k, rec, msg: out.append((k, rec, len(msg.value() or b""))) or True)
    try:
        reader.load()
    finally:
        reader.close()
    return out


def start(kafka_settings, tmp_path, worker=True, **env):
    port = free_port()
    env = {"GEOFLUX_OBJECT_STORE_URL": (tmp_path / "objects").as_uri(), **env}
    procs = [start_api(kafka_settings, port, tmp_path, **env)]
    if worker:
        procs.append(start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env))
    wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="API port")
    return f"http://127.0.0.1:{port}", procs


def staged_objects(tmp_path):
    return sorted(p.name for p in (tmp_path / "objects" / "inputs").glob("*")) \
        if (tmp_path / "objects" / "inputs").is_dir() else []


def test_large_inputs_complete_in_process_and_the_limit_is_one_number(kafka_settings, tmp_path):
    base, procs = start(kafka_settings, tmp_path)
    try:
        jobs = {}
        for size in (2_500_000, 15_000_000, LIMIT):
            inputs = line_of_size(size)
            status, body = execute(base, inputs)
            assert status == 201, (size, body)
            jobs[size] = body["jobID"]
        # one byte past the limit: 413 with the reason, before anything is parsed or stored
        status, body = execute(base, line_of_size(LIMIT + 1))
        assert status == 413 and body["rule"] == "max_input_bytes", body
        assert f"{LIMIT + 1} bytes" in body["detail"] and str(LIMIT) in body["detail"]
        # a body past the API's body limit (limit + room for the envelope) is a 413 problem too
        huge = json.dumps({"inputs": line_of_size(LIMIT + 2 * 1024 * 1024)}).encode()
        status, body = execute(base, None, raw_body=huge)
        assert status == 413 and body["status"] == 413 and body["detail"], body
        for size, job_id in jobs.items():
            done = wait_for(lambda: (s := http("GET", f"{base}/jobs/{job_id}", key=ACME)[1])["status"]
                            in ("successful", "failed") and s, 180, what=f"the {size}-byte job")
            assert done["status"] == "successful", done
            out = http("GET", f"{base}/jobs/{job_id}/results", key=ACME)[1]
            assert out["length_m"] > 100_000 * (size // 40)  # every segment is over 100 km
        # on the topic, references: the records stay small
        requests = {k: (rec, n) for k, rec, n in committed(kafka_settings, "jobs.requests", "JobRequest")}
        for job_id in jobs.values():
            rec, n = requests[job_id]
            assert rec["inputs"] == "" and rec["inputs_ref"] == f"inputs/{job_id}.json" and n < 4096
        # staged inputs of finished jobs are deleted
        wait_for(lambda: staged_objects(tmp_path) == [], 30, what="staged inputs deleted")
    finally:
        for p in procs:
            stop(p)


def test_a_submission_that_cannot_be_written_leaves_nothing_behind(kafka_settings, tmp_path):
    # inputs up to 3 MB travel inline here: a 2.5 MB one makes a record the broker refuses
    base, procs = start(kafka_settings, tmp_path, worker=False, GEOFLUX_JOBS_INLINE_INPUT_BYTES="3000000")
    usage = lambda: http("GET", f"{base}/api/v1/tenants/acme/quotas", key=ACME)[1]["usage"]  # noqa: E731
    try:
        status, body = execute(base, line_of_size(2_500_000))
        assert status == 413 and body["type"] == "urn:geoflux:problem:record-too-large", body
        assert "larger than the broker accepts" in body["detail"]
        # the topic jobs are written to is gone: 503 with the reason, and the staged inputs of
        # the failed submission are deleted again
        admin = AdminClient({"bootstrap.servers": kafka_settings.bootstrap})
        admin.delete_topics([topic("jobs.requests", kafka_settings)])[topic("jobs.requests", kafka_settings)].result(30)
        started = time.monotonic()
        status, body = execute(base, line_of_size(3_500_000))
        assert status == 503 and "not accepted" in body["detail"], body
        assert time.monotonic() - started < 30
        assert staged_objects(tmp_path) == []
        status, body = execute(base, line_of_size(5_000))
        assert status == 503, body
        # nothing of the three is visible anywhere
        assert committed(kafka_settings, "jobs.status", "JobStatus") == []
        assert usage() == {"concurrent_jobs": 0, "submissions_last_minute": 0}
        assert http("GET", f"{base}/jobs", key=ACME)[1]["total"] == 0
        # the topic back: the same writer goes on
        from connectors.kafka_admin import apply
        apply(kafka_settings)
        status, body = wait_for(lambda: (r := execute(base, line_of_size(5_000)))[0] == 201 and r, 60,
                                interval_s=1, what="a submission once the topic is back")
        assert [k for k, _, _ in committed(kafka_settings, "jobs.status", "JobStatus")] == [body["jobID"]]
        assert usage() == {"concurrent_jobs": 1, "submissions_last_minute": 1}
    finally:
        for p in procs:
            stop(p)
