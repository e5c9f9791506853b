"""Job idempotency never crosses tenants: the same Idempotency-Key header or the same inputs
from two tenants are two jobs; a header reused for another request is a 422 with the reason;
the key index forgets after the window."""

import json
import time
import urllib.error
import urllib.request

import pytest

from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
ACME, GLOBEX = TENANT_KEYS["acme"], TENANT_KEYS["globex"]


def execute(base, key, pid, inputs, *, header=None, sync=False):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}",
               **({} if sync else {"Prefer": "respond-async"}),
               **({"Idempotency-Key": header} if header else {})}
    req = urllib.request.Request(f"{base}/processes/{pid}/execution", method="POST",
                                 data=json.dumps({"inputs": inputs}).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def start(kafka_settings, tmp_path, worker=True, **env):
    port = free_port()
    procs = [start_api(kafka_settings, port, tmp_path, **env)]
    if worker:
        procs.append(start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env))
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
    return f"http://127.0.0.1:{port}", procs


@pytest.fixture
def stack(kafka_settings, tmp_path):
    base, procs = start(kafka_settings, tmp_path)
    yield base
    for p in procs:
        stop(p)


def test_two_tenants_never_share_a_job_by_header_or_by_inputs(stack):
    base = stack
    inputs = {"geometry": SQUARE, "distance_m": 100}
    # the same header from two tenants: two jobs, and neither sees the other's
    s_a, _, job_a = execute(base, ACME, "buffer", inputs, header="order-1")
    s_b, _, job_b = execute(base, GLOBEX, "buffer", inputs, header="order-1")
    assert (s_a, s_b) == (201, 201) and job_a["jobID"] != job_b["jobID"]
    assert http("GET", f"{base}/jobs/{job_a['jobID']}", key=GLOBEX)[0] == 404
    # ...while the owner's repeat is its own job again
    again = execute(base, ACME, "buffer", inputs, header="order-1")
    assert again[0] == 200 and again[2]["jobID"] == job_a["jobID"]
    # the same inputs without a header (the derived key): two jobs as well
    hull = {"geometry": {**SQUARE, "coordinates": [[[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]]]}}
    s_a, _, auto_a = execute(base, ACME, "convex-hull", hull)
    s_b, _, auto_b = execute(base, GLOBEX, "convex-hull", hull)
    assert (s_a, s_b) == (201, 201) and auto_a["jobID"] != auto_b["jobID"]
    assert execute(base, ACME, "convex-hull", hull)[2]["jobID"] == auto_a["jobID"]
    # synchronous: tenant B's answer comes from B's own job, not from A's results
    area = {"geometry": {**SQUARE, "coordinates": [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]]}}
    s_a, h_a, out_a = execute(base, ACME, "area-length", area, header="sync-1", sync=True)
    s_b, h_b, out_b = execute(base, GLOBEX, "area-length", area, header="sync-1", sync=True)
    assert (s_a, s_b) == (200, 200) and out_a == out_b and out_a["area_m2"] > 0
    assert h_a["Location"] != h_b["Location"]
    own = http("GET", f"{base}{h_b['Location']}", key=GLOBEX)[1]
    assert own["status"] == "successful"
    assert http("GET", f"{base}{h_a['Location']}", key=GLOBEX)[0] == 404
    listed = {j["jobID"] for j in http("GET", f"{base}/jobs?limit=100", key=GLOBEX)[1]["jobs"]}
    assert listed == {job_b["jobID"], auto_b["jobID"], h_b["Location"].rsplit("/", 1)[1]}


def test_a_header_reused_for_another_request_is_422_never_the_other_job(stack):
    base = stack
    inputs = {"geometry": SQUARE, "distance_m": 100}
    status, _, first = execute(base, ACME, "buffer", inputs, header="pay-7")
    assert status == 201
    status, _, problem = execute(base, ACME, "buffer", {**inputs, "distance_m": 101}, header="pay-7")
    assert status == 422 and "different inputs" in problem["detail"], problem
    assert problem["type"] == "urn:geoflux:problem:idempotency-key-reused"
    assert first["jobID"] not in json.dumps(problem)
    status, _, problem = execute(base, ACME, "convex-hull", {"geometry": SQUARE}, header="pay-7")
    assert status == 422 and "process 'buffer'" in problem["detail"], problem
    # another tenant may use the same header for anything: its keys are its own
    assert execute(base, GLOBEX, "convex-hull", {"geometry": SQUARE}, header="pay-7")[0] == 201
    # a header too long is refused with the reason
    status, _, problem = execute(base, ACME, "buffer", inputs, header="x" * 300)
    assert status == 400 and "Idempotency-Key" in problem["detail"]


def test_the_key_index_forgets_after_the_window(kafka_settings, tmp_path):
    window_s = 3.0
    base, procs = start(kafka_settings, tmp_path, worker=False,
                        GEOFLUX_JOBS_IDEMPOTENCY_TTL_DAYS=str(window_s / 86400))
    try:
        inputs = {"geometry": SQUARE, "distance_m": 7}
        status, _, first = execute(base, ACME, "buffer", inputs, header="late-1")
        assert status == 201
        created = time.monotonic()
        assert execute(base, ACME, "buffer", inputs, header="late-1")[2]["jobID"] == first["jobID"]
        assert execute(base, ACME, "buffer", {**inputs, "distance_m": 8}, header="late-1")[0] == 422
        status, _, auto = execute(base, ACME, "buffer", {**inputs, "distance_m": 70})
        assert status == 201
        assert execute(base, ACME, "buffer", {**inputs, "distance_m": 70})[2]["jobID"] == auto["jobID"]
        wait_for(lambda: time.monotonic() - created > window_s + 0.5, window_s + 5,
                 what="the idempotency window to pass")
        # a repeat after the window is a new job, with a header or without
        status, _, second = execute(base, ACME, "buffer", inputs, header="late-1")
        assert status == 201 and second["jobID"] != first["jobID"]
        status, _, auto2 = execute(base, ACME, "buffer", {**inputs, "distance_m": 70})
        assert status == 201 and auto2["jobID"] != auto["jobID"]
        wait_for(lambda: time.monotonic() - created > 2 * window_s + 1, 2 * window_s + 5,
                 what="the second window to pass")
        # forgotten, the header may name another request
        assert execute(base, ACME, "buffer", {**inputs, "distance_m": 9}, header="late-1")[0] == 201
    finally:
        for p in procs:
            stop(p)
