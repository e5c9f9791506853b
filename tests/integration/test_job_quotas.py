"""Per-tenant job quotas through the API: each rule, the quotas endpoint with tenant keys, and
a tenant at its limit not slowing another tenant's jobs."""

import json
import time

import pytest

from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import OPERATOR_KEY, TENANT_KEYS, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
QUOTAS = {"acme": {"concurrent_jobs": 2, "submissions_per_minute": 100},
          "t": {"submissions_per_minute": 2},
          "*": {"concurrent_jobs": 20, "submissions_per_minute": 100, "max_input_bytes": 2000}}
ENV = {"GEOFLUX_QUOTAS_TENANTS": json.dumps(QUOTAS), "GEOFLUX_QUOTAS_CONCURRENT_RETRY_AFTER_S": "7",
       "GEOFLUX_JOBS_CONCURRENCY": "4"}


def call(method, url, body=None, key=OPERATOR_KEY, prefer_async=True):
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}",
               **({"Prefer": "respond-async"} if prefer_async else {})}
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


@pytest.fixture
def api(kafka_settings, tmp_path):
    port = free_port()
    procs = [start_api(kafka_settings, port, tmp_path, **ENV),
             start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **ENV)]
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
    yield base
    for p in procs:
        stop(p)


def hull_latency(base, key, n, salt):
    """Synchronous convex hulls, one after another: seconds each."""
    out = []
    for i in range(n):
        t0 = time.monotonic()
        status, _, body = call("POST", f"{base}/processes/convex-hull/execution",
                               {"inputs": {"geometry": {**SQUARE, "coordinates": [[[0, 0], [1, 0], [1, 1 + (salt * 100 + i) / 1000], [0, 1], [0, 0]]]}}},
                               key=key, prefer_async=False)
        assert status == 200, body
        out.append(time.monotonic() - t0)
    return out


def test_quota_rules_and_isolation_between_tenants(api):
    base, acme, globex = api, TENANT_KEYS["acme"], TENANT_KEYS["globex"]
    baseline = hull_latency(base, globex, 3, 1)
    # concurrency: acme holds two jobs; the third is refused with Retry-After and the rule
    for s in (30, 31):
        status, _, body = call("POST", f"{base}/processes/sleep/execution", {"inputs": {"seconds": s}}, key=acme)
        assert status == 201, body
    status, headers, body = call("POST", f"{base}/processes/sleep/execution", {"inputs": {"seconds": 32}}, key=acme)
    assert status == 429 and headers["Retry-After"] == "7" and body["rule"] == "concurrent_jobs"
    assert "limit is 2" in body["detail"]
    # ...while globex's jobs run as fast as before acme filled its quota
    during = hull_latency(base, globex, 3, 2)
    assert max(during) < max(2.0, 3 * max(baseline)), (baseline, during)
    # submissions per minute (tenant t: 2)
    for i in range(2):
        assert call("POST", f"{base}/processes/convex-hull/execution",
                    {"inputs": {"geometry": {**SQUARE, "coordinates": [[[0, 0], [2, 0], [2, 2 + i], [0, 2], [0, 0]]]}}},
                    key=TENANT_KEYS["t"])[0] == 201
    status, headers, body = call("POST", f"{base}/processes/convex-hull/execution",
                                 {"inputs": {"geometry": {**SQUARE, "coordinates": [[[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]]]}}},
                                 key=TENANT_KEYS["t"])
    assert status == 429 and body["rule"] == "submissions_per_minute"
    assert 1 <= int(headers["Retry-After"]) <= 60
    # maximum input size ("*": 2000 bytes): a retry cannot help, so 413 with the reason
    big = {"type": "LineString", "coordinates": [[i / 1000, i / 1000] for i in range(200)]}
    status, headers, body = call("POST", f"{base}/processes/convex-hull/execution", {"inputs": {"geometry": big}},
                                 key=globex)
    assert status == 413 and body["rule"] == "max_input_bytes" and "Retry-After" not in headers
    # an identical request that already has a job is not a new submission: no quota spent
    status, _, _ = call("POST", f"{base}/processes/sleep/execution", {"inputs": {"seconds": 30}}, key=acme)
    assert status == 200
    # the quotas endpoint: own tenant, another tenant (404, not disclosed), an operator
    status, _, q = call("GET", f"{base}/api/v1/tenants/acme/quotas", key=acme)
    assert status == 200 and q["limits"]["concurrent_jobs"] == 2 and q["usage"]["concurrent_jobs"] == 2
    assert call("GET", f"{base}/api/v1/tenants/globex/quotas", key=acme)[0] == 404
    status, _, q = call("GET", f"{base}/api/v1/tenants/globex/quotas")
    assert status == 200 and q["limits"]["max_input_bytes"] == 2000 and q["limits"]["concurrent_jobs"] == 20
    print(f"globex convex-hull latency s: baseline {baseline}, acme at its limit {during}")
