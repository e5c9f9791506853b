"""Job results live in the object store, read on demand by the API: `jobs.results` carries
their key (and the outputs inline when small); they expire with the idempotency window: the
API answers 410 and the worker's sweep deletes them."""

import json
import time

import pytest

from connectors.topic_reader import TopicReader
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, start_cli, stop
from tests.integration.job_inputs import line_of_size

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ACME = TENANT_KEYS["acme"]
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def results_on_topic(settings):
    out = {}
    reader = TopicReader(settings, topic("jobs.results", settings), "JobResult", AvroCodec(),
                         lambda k, rec, _m: out.__setitem__(k, rec) or True)
    try:
        reader.load()
    finally:
        reader.close()
    return out


def run_job(base, pid, inputs):
    status, body = http("POST", f"{base}/processes/{pid}/execution", {"inputs": inputs}, key=ACME,
                        timeout=120, headers={"Prefer": "respond-async"})
    assert status == 201, body
    job_id = body["jobID"]
    done = wait_for(lambda: (s := http("GET", f"{base}/jobs/{job_id}", key=ACME)[1])["status"]
                    in ("successful", "failed") and s, 120, what=f"job {job_id}")
    assert done["status"] == "successful", done
    return job_id


def test_results_from_the_object_store_expire_with_the_window(kafka_settings, tmp_path):
    window_s = 20.0
    objects = tmp_path / "objects"
    env = {"GEOFLUX_OBJECT_STORE_URL": objects.as_uri(),
           "GEOFLUX_JOBS_IDEMPOTENCY_TTL_DAYS": str(window_s / 86400),
           "GEOFLUX_JOBS_SWEEP_INTERVAL_S": "1"}
    port = free_port()
    procs = [start_api(kafka_settings, port, tmp_path, **env),
             start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env)]
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="API port")
        small = run_job(base, "convex-hull", {"geometry": SQUARE})
        big = run_job(base, "reproject", {**line_of_size(600_000), "to_epsg": 3857})
        finished = time.monotonic()
        # the API reads the outputs from the store; the topic has the key, inline when small
        out = http("GET", f"{base}/jobs/{small}/results", key=ACME)[1]
        assert out["geometry"]["type"] == "Polygon"
        assert json.loads((objects / "results" / f"{small}.json").read_bytes()) == out
        big_out = http("GET", f"{base}/jobs/{big}/results", key=ACME)[1]
        assert big_out["crs"] == "EPSG:3857" and len(big_out["geometry"]["coordinates"]) > 10_000
        on_topic = results_on_topic(kafka_settings)
        assert json.loads(on_topic[small]["outputs"]) == out
        assert on_topic[small]["outputs_ref"] == f"results/{small}.json"
        assert on_topic[big]["outputs"] == "" and on_topic[big]["outputs_ref"] == f"results/{big}.json"
        # another tenant cannot read them
        assert http("GET", f"{base}/jobs/{small}/results", key=TENANT_KEYS["globex"])[0] == 404
        # after the window: 410 with the reason, and the worker's sweep deleted the objects
        wait_for(lambda: time.monotonic() - finished > window_s + 1, window_s + 10, interval_s=0.5,
                 what="the window to pass")
        status, problem = http("GET", f"{base}/jobs/{small}/results", key=ACME)
        assert status == 410 and "expired" in problem["detail"], problem
        wait_for(lambda: not list((objects / "results").glob("*.json")), 30, what="results swept")
        assert http("GET", f"{base}/jobs/{small}", key=ACME)[1]["status"] == "successful"  # status stays
    finally:
        for p in procs:
            stop(p)
