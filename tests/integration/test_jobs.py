"""Geoprocessing jobs end to end: OGC API, queue, tiers, retries, DLQ, dismissal, callbacks,
and the faults: a SIGKILLed worker and PostgreSQL stopped for 30 s."""

import json
import time

import psycopg
import pytest

from schemas.codec import AvroCodec
from services.control.dlq import DlqView
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import FakeReceiver
from tests.integration.alert_helpers import FAST
from tests.integration.geo_helpers import OPERATOR_KEY, http, kill, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
JOB_ENV = {"GEOFLUX_JOBS_MIN_TIMEOUT_S": "0.5",
           # union may retry for a minute (1+2+4+8+16+16+16 s): it must outlast a 30 s outage;
           # area-length keeps the default 3 attempts and is forced onto PostGIS
           "GEOFLUX_JOBS_BACKOFF_S": "[1, 2, 4, 8, 16, 16, 16]",
           "GEOFLUX_JOBS_MAX_ATTEMPTS_BY_PROCESS": '{"union": 8}',
           "GEOFLUX_JOBS_TIERS": '{"area-length": "postgis"}',
           "GEOFLUX_ALERT_CALLBACK_SECRET": "install-secret-of-this-test"}


@pytest.fixture
def stack(kafka_settings, tmp_path, postgres_dsn):
    port = free_port()
    env = {**JOB_ENV, "GEOFLUX_PG_DSN": postgres_dsn}
    procs = {"api": start_api(kafka_settings, port, tmp_path, **env),
             "jobs": start_cli(kafka_settings, ["worker", "jobs"], "jobs", tmp_path, **env),
             "delivery": start_cli(kafka_settings, ["worker", "delivery"], "delivery", tmp_path, **FAST,
                                   GEOFLUX_ALERT_CALLBACK_SECRET=JOB_ENV["GEOFLUX_ALERT_CALLBACK_SECRET"])}
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
    ctx = {"base": base, "procs": procs, "settings": kafka_settings, "tmp": tmp_path, "env": env,
           "dsn": postgres_dsn}
    yield ctx
    for p in ctx["procs"].values():
        stop(p)


def execute(base, pid, inputs, prefer_async=True, headers=None, **extra):
    import urllib.request
    req = urllib.request.Request(f"{base}/processes/{pid}/execution", method="POST",
                                 data=json.dumps({"inputs": inputs, **extra}).encode(),
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {OPERATOR_KEY}",
                                          **({"Prefer": "respond-async"} if prefer_async else {}),
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def status_of(base, job_id):
    return http("GET", f"{base}/jobs/{job_id}")[1]


def wait_status(base, job_id, status, timeout=60):
    return wait_for(lambda: status_of(base, job_id)["status"] == status and status_of(base, job_id),
                    timeout, what=f"job {job_id} {status}")


def test_ogc_api_sync_async_idempotency_and_errors(stack):
    base = stack["base"]
    assert {p["id"] for p in http("GET", f"{base}/processes")[1]["processes"]} >= {"buffer", "union"}
    assert http("GET", f"{base}/processes/buffer")[1]["inputs"]["distance_m"]["schema"]["type"] == "number"
    status, problem = http("GET", f"{base}/processes/nope")
    assert status == 404 and problem["type"].endswith("no-such-process")
    # synchronous for a small input
    status, _, out = execute(base, "convex-hull", {"geometry": SQUARE}, prefer_async=False)
    assert status == 200 and out["geometry"]["type"] == "Polygon"
    status, _, out = execute(base, "area-length", {"geometry": SQUARE}, prefer_async=False)
    assert status == 200 and out["area_m2"] == pytest.approx(12308778361.469, rel=1e-6)  # PostGIS
    # asynchronous
    status, headers, info = execute(base, "buffer", {"geometry": SQUARE, "distance_m": 100})
    assert status == 201 and headers["Preference-Applied"] == "respond-async"
    assert headers["Location"] == f"/jobs/{info['jobID']}" and info["status"] == "accepted"
    done = wait_status(base, info["jobID"], "successful")
    assert done["progress"] == 100 and done["tier"] == "inprocess"
    assert http("GET", f"{base}/jobs/{info['jobID']}/results")[1]["geometry"]["type"] == "Polygon"
    # identical submissions return one job; an Idempotency-Key header makes its own key
    again = execute(base, "buffer", {"geometry": SQUARE, "distance_m": 100})
    assert again[0] == 200 and again[2]["jobID"] == info["jobID"]
    keyed = [execute(base, "buffer", {"geometry": SQUARE, "distance_m": 1}, headers={"Idempotency-Key": "abc"})
             for _ in range(2)]
    assert keyed[0][2]["jobID"] == keyed[1][2]["jobID"]
    # bad input is a 400 with the reason
    status, _, problem = execute(base, "buffer", {"geometry": SQUARE})
    assert status == 400 and "distance_m is required" in problem["detail"]
    status, page = http("GET", f"{base}/jobs?processID=buffer&limit=1")
    assert status == 200 and len(page["jobs"]) == 1 and any(l["rel"] == "next" for l in page["links"])
    assert http("GET", f"{base}/jobs/none")[1]["type"].endswith("no-such-job")


def test_results_not_ready_dismiss_stops_a_running_job_and_timeout(stack):
    base = stack["base"]
    _, _, info = execute(base, "sleep", {"seconds": 30})
    wait_for(lambda: status_of(base, info["jobID"])["progress"] >= 5, 30, what="progress persisted")
    status, problem = http("GET", f"{base}/jobs/{info['jobID']}/results")
    assert status == 404 and problem["type"].endswith("result-not-ready")
    started = time.monotonic()
    status, body = http("DELETE", f"{base}/jobs/{info['jobID']}")
    assert status == 200
    wait_status(base, info["jobID"], "dismissed", 10)
    assert time.monotonic() - started < 10  # stopped, not left to run its 30 s
    assert http("GET", f"{base}/jobs/{info['jobID']}/results")[0] == 410
    _, _, slow = execute(base, "sleep", {"seconds": 20}, timeout_s=1)
    failed = wait_status(base, slow["jobID"], "failed", 30)
    assert "timeout" in failed["message"]


def test_subscriber_callbacks_go_through_durable_delivery(stack):
    base = stack["base"]
    hook = FakeReceiver()
    hook.fail_first(1)  # the first delivery of each callback fails: it is retried, not lost
    try:
        _, _, info = execute(base, "convex-hull", {"geometry": SQUARE}, subscriber={
            "successUri": hook.url + "/done", "inProgressUri": hook.url + "/running"})
        wait_status(base, info["jobID"], "successful")
        wait_for(lambda: {r.path for r in hook.received()} == {"/done", "/running"}, 30,
                 what="both callbacks delivered")
        done = next(r for r in hook.received() if r.path == "/done")
        assert done.json()["data"]["jobID"] == info["jobID"] and done.json()["type"] == "job.successful"
        assert done.headers["webhook-id"] == f"{info['jobID']}:successUri"
    finally:
        hook.close()


def test_sigkill_mid_job_completes_once_with_postgis_side_effects_once(stack):
    base = stack["base"]
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"n": i}, "geometry": {"type": "Point", "coordinates": [
            (i * 37) % 170 - 85, (i * 11) % 80 - 40]}} for i in range(6000)]}
    polys = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": str(i)}, "geometry": {"type": "Polygon", "coordinates": [
            [[x, y], [x + 10, y], [x + 10, y + 10], [x, y + 10], [x, y]]]}}
        for i, (x, y) in enumerate([(-80, -40), (0, 0), (50, 20)])]}
    _, _, info = execute(base, "point-in-polygon", {"points": points, "polygons": polys})
    wait_for(lambda: status_of(base, info["jobID"])["status"] == "running", 60, what="job running")
    assert status_of(base, info["jobID"])["tier"] == "postgis"  # routed by input size
    kill(stack["procs"]["jobs"])
    stack["procs"]["jobs"] = start_cli(stack["settings"], ["worker", "jobs"], "jobs-2", stack["tmp"],
                                       **stack["env"])
    done = wait_status(base, info["jobID"], "successful", 120)
    out = http("GET", f"{base}/jobs/{info['jobID']}/results")[1]
    assert sum(out["counts"].values()) == sum(len(f["properties"]["within"]) for f in out["points"]["features"])
    with psycopg.connect(stack["dsn"]) as conn:
        rows = conn.execute("SELECT count(*) FROM geoflux_job_results WHERE job_id = %s",
                            (info["jobID"],)).fetchone()[0]
    assert rows == 1 and done["attempt"] >= 1


def test_postgres_down_30s_jobs_retry_and_succeed_then_dlq_and_redrive(stack, postgres):
    base = stack["base"]
    big = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"k": str(i % 3)}, "geometry": {"type": "Point", "coordinates": [
            (i * 13) % 170 - 85, (i * 7) % 80 - 40]}} for i in range(5001)]}
    postgres.stop()
    try:
        jobs = [execute(base, "union", {"features": big, "by": "k"}, priority=p,
                        headers={"Idempotency-Key": f"burst-{p}"})[2]["jobID"] for p in range(5)]
        wait_for(lambda: all("retrying" in (status_of(base, j)["message"] or "") for j in jobs), 60,
                 what="jobs retrying while PostgreSQL is down")
        outage_started = time.monotonic()
        wait_for(lambda: time.monotonic() - outage_started > 30, 40, interval_s=1,
                 what="a 30 s outage")
    finally:
        postgres.start()
    for j in jobs:
        st = wait_status(base, j, "successful", 120)
        assert st["tier"] == "postgis" and st["attempt"] >= 2
    # a job that cannot succeed while the database is down for good: DLQ, then redrive
    postgres.stop()
    try:
        _, _, info = execute(base, "area-length", {"geometry": SQUARE}, headers={"Idempotency-Key": "doomed"})
        failed = wait_status(base, info["jobID"], "failed", 120)
        assert "after 3 attempt(s)" in failed["message"] and "PostgreSQL unavailable" in failed["message"]
    finally:
        postgres.start()
    dlq = DlqView(stack["settings"], AvroCodec(), "jobs", "JobRequest").start()
    try:
        wait_for(lambda: any(e["original"]["job_id"] == info["jobID"] for e in dlq.list()), 30,
                 what="the job in the DLQ")
        entry = next(e for e in dlq.list() if e["original"]["job_id"] == info["jobID"])
        assert entry["attempts"] == 3 and entry["error_class"] == "transient"
        assert entry["first_failure_ms"] <= entry["last_failure_ms"]
        status, _ = http("POST", f"{base}/api/v1/dlq/{entry['dlq_id']}/redrive")
        assert status == 202
    finally:
        dlq.close()
    wait_status(base, info["jobID"], "successful", 120)


def test_higher_priority_overtakes_under_load(stack):
    base = stack["base"]
    stop(stack["procs"]["jobs"])  # queue up while no worker runs: that is the load
    low = [execute(base, "sleep", {"seconds": 0.2}, priority=1,
                   headers={"Idempotency-Key": f"low-{i}"})[2]["jobID"] for i in range(12)]
    high = [execute(base, "sleep", {"seconds": 0.2}, priority=9,
                    headers={"Idempotency-Key": f"high-{i}"})[2]["jobID"] for i in range(3)]
    stack["procs"]["jobs"] = start_cli(stack["settings"], ["worker", "jobs"], "jobs-prio", stack["tmp"],
                                       **stack["env"], GEOFLUX_JOBS_CONCURRENCY="1")
    for j in low + high:
        wait_status(base, j, "successful", 120)
    started = {j: status_of(base, j)["started"] for j in low + high}
    order = sorted(started, key=started.get)
    # submitted last, the high-priority jobs ran before every low-priority one
    assert set(order[:3]) == set(high), order
