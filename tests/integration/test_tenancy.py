"""API keys and tenant isolation on every REST endpoint: no key is 401; a tenant key never
reads or changes another tenant's geofences, rules, channels, silences, patterns, jobs,
alerts, matches or aggregates (404 for an object, 403 for a list or write naming the other
tenant); dead-letter queues are for operator keys only."""

import time
import uuid

import pytest

from connectors.kafka_admin import apply
from connectors.kafka_producer import ReliableProducer
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ACME, GLOBEX = TENANT_KEYS["acme"], TENANT_KEYS["globex"]
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def fence(gid, **props):
    return {"type": "Feature", "id": gid, "geometry": SQUARE, "properties": {"name": gid, **props}}


def publish_records(kafka_settings, codec, logical, schema, records, key_field):
    t, producer = topic(logical, kafka_settings), ReliableProducer(kafka_settings)
    for rec in records:
        producer.send(t, codec.encode(t, schema, rec), key=rec[key_field])
    producer.flush_or_raise()


def alert_status(alert_id, tenant):
    now = int(time.time() * 1000)
    return {"alert_id": alert_id, "tenant_id": tenant, "status": "SENT", "channels": {"ops": "SENT"},
            "attempts": {"ops": 1}, "last_errors": {}, "fallback_of": {}, "reason": None,
            "rule_id": "r", "severity": "high", "title": "x", "created_ms": now, "delivered_ms": now,
            "delivered_by": {"ops": "ops"}, "updated_ms": now}


def cep_match(match_id, tenant):
    return {"match_id": match_id, "pattern_id": "p", "pattern_version": 1, "tenant_id": tenant,
            "key": "e1", "severity": "high", "event_ids": ["x"], "start_ms": 0, "end_ms": 1, "detail": {}}


@pytest.fixture(scope="module")
def module_kafka(bootstrap) -> KafkaSettings:
    """One topic namespace for the module: every test shares one API (tests write disjoint ids)."""
    s = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(s)
    return s


@pytest.fixture(scope="module")
def base(module_kafka, tmp_path_factory):
    port = free_port()
    proc = start_api(module_kafka, port, tmp_path_factory.mktemp("tenancy"))
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_requests_without_a_valid_key_are_401(base):
    for method, path in [("GET", "/api/v1/geofences"), ("POST", "/api/v1/geoevent/evaluate"),
                         ("GET", "/api/v1/alerts"), ("GET", "/api/v1/alerts/rules"),
                         ("GET", "/api/v1/cep/patterns"), ("GET", "/jobs"), ("GET", "/api/v1/dlq")]:
        for key in (None, "not-a-key-but-long-enough"):
            status, problem = http(method, base + path, {} if method == "POST" else None, key=key)
            assert status == 401 and "API key" in problem["detail"], (method, path, key)
    assert http("GET", base + "/healthz", key=None)[0] == 200  # probes need no key


def test_config_objects_are_isolated(base):
    """Ids are per tenant: globex may use acme's ids for its own objects, and never sees, changes
    or deletes acme's — nor learns that they exist."""
    objects = {
        "/api/v1/alerts/rules": {"rule_id": "r1", "severity": "high", "channels": ["ops"]},
        "/api/v1/alerts/channels": {"name": "ops", "kind": "webhook",
                                    "settings": {"url": "http://127.0.0.1:9/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}},
        "/api/v1/silences": {"silence_id": "s1", "matchers": [{"name": "severity", "value": "info"}],
                             "ends_ms": 4_070_908_800_000},
        "/api/v1/cep/patterns": {"pattern_id": "p1", "severity": "high", "kind": "track_gap",
                                 "within_s": 60},
        "/api/v1/alerts/escalations": {"policy_id": "oncall", "severities": ["high"],
                                       "levels": [{"delay_s": 60, "channels": ["ops"]}]},
    }
    for path, body in objects.items():
        status, created = http("POST", base + path, body, key=ACME)  # tenant filled in from the key
        assert status == 201 and created["tenant_id"] == "acme", (path, created)
        oid = next(v for k, v in body.items() if k in ("rule_id", "name", "silence_id", "pattern_id",
                                                       "policy_id"))
        assert http("GET", f"{base}{path}/{oid}", key=ACME)[0] == 200
        assert http("GET", f"{base}{path}/{oid}", key=GLOBEX)[0] == 404, path
        assert http("DELETE", f"{base}{path}/{oid}", key=GLOBEX)[0] == 404, path
        assert http("GET", base + path, key=GLOBEX)[1]["total"] == 0, path
        assert http("GET", base + path + "?tenant_id=acme", key=GLOBEX)[0] == 403, path
        status, problem = http("POST", base + path, {**body, "tenant_id": "acme"}, key=GLOBEX)
        assert status == 403 and "acme" in problem["detail"], path
        assert http("GET", base + path)[1]["total"] == 1, path  # the operator sees every tenant
        # the same id for globex's own object: created, not "already exists" (which would disclose acme's)
        status, theirs = http("POST", base + path, body, key=GLOBEX)
        assert status == 201 and theirs["tenant_id"] == "globex", (path, theirs)
        status, theirs = http("PUT", f"{base}{path}/{oid}", body, key=GLOBEX)
        assert status == 200 and theirs["tenant_id"] == "globex" and theirs["version"] == 2, path
        ours = http("GET", f"{base}{path}/{oid}", key=ACME)[1]
        assert ours["tenant_id"] == "acme" and ours["version"] == 1, (path, ours)  # untouched by globex
        status, problem = http("GET", f"{base}{path}/{oid}")  # an operator must say whose
        assert status == 422 and "tenant_id" in problem["detail"], path
        assert http("GET", f"{base}{path}/{oid}?tenant_id=acme")[1]["tenant_id"] == "acme", path
        assert http("DELETE", f"{base}{path}/{oid}", key=GLOBEX)[0] == 200, path
        assert http("GET", f"{base}{path}/{oid}", key=ACME)[1]["version"] == 1, path


def test_geofences_and_evaluation_are_isolated(base):
    assert http("POST", f"{base}/api/v1/geofences", fence("g-acme"), key=ACME)[0] == 201
    assert http("GET", f"{base}/api/v1/geofences/g-acme", key=ACME)[1]["properties"]["tenant_id"] == "acme"
    for method in ("GET", "DELETE"):
        assert http(method, f"{base}/api/v1/geofences/g-acme", key=GLOBEX)[0] == 404, method
    assert http("GET", f"{base}/api/v1/geofences", key=GLOBEX)[1]["total"] == 0
    assert http("GET", f"{base}/api/v1/geofences?tenant_id=acme", key=GLOBEX)[0] == 403
    assert http("POST", f"{base}/api/v1/geofences", fence("g2", tenant_id="acme"), key=GLOBEX)[0] == 403
    loc = {"entity_id": "e1", "lon": 0.5, "lat": 0.5, "ts_ms": 1, "tenant_id": "acme"}
    assert http("POST", f"{base}/api/v1/geoevent/evaluate", loc, key=GLOBEX)[0] == 403
    assert http("POST", f"{base}/api/v1/geoevent/evaluate/batch", {"locations": [loc]}, key=GLOBEX)[0] == 403
    # globex's own fence of the same id (POST, then PUT): acme's stays as it was
    status, theirs = http("POST", f"{base}/api/v1/geofences", fence("g-acme"), key=GLOBEX)
    assert status == 201 and theirs["properties"]["tenant_id"] == "globex", theirs
    assert http("PUT", f"{base}/api/v1/geofences/g-acme", fence("g-acme"), key=GLOBEX)[0] == 200
    ours = http("GET", f"{base}/api/v1/geofences/g-acme", key=ACME)[1]
    assert ours["properties"]["tenant_id"] == "acme" and ours["properties"]["version"] == 1


def test_jobs_are_isolated(base):
    status, job = http("POST", f"{base}/processes/buffer/execution",
                       {"inputs": {"geometry": SQUARE, "distance_m": 10}}, key=ACME,
                       headers={"Prefer": "respond-async"})
    assert status == 201, job
    jid = job["jobID"]
    wait_for(lambda: http("GET", f"{base}/jobs/{jid}", key=ACME)[0] == 200, 30, what="the job's status")
    for method, path in (("GET", f"/jobs/{jid}"), ("GET", f"/jobs/{jid}/results"), ("DELETE", f"/jobs/{jid}")):
        assert http(method, base + path, key=GLOBEX)[0] == 404, path
    assert http("GET", f"{base}/jobs", key=GLOBEX)[1]["total"] == 0
    assert http("GET", f"{base}/jobs?tenant_id=acme", key=GLOBEX)[0] == 403
    status, _ = http("POST", f"{base}/processes/buffer/execution",
                     {"inputs": {"geometry": SQUARE, "distance_m": 10}}, key=GLOBEX,
                     headers={"Prefer": "respond-async", "X-Geoflux-Tenant": "acme"})
    assert status == 403
    assert http("GET", f"{base}/jobs/{jid}", key=ACME)[1]["status"] != "dismissed"


def test_alerts_matches_aggregates_and_dlqs_are_isolated(base, module_kafka):
    kafka_settings = module_kafka
    codec = AvroCodec()
    publish_records(kafka_settings, codec, "alerts.status", "AlertStatus",
                    [alert_status("a-acme", "acme"), alert_status("a-globex", "globex")], "alert_id")
    publish_records(kafka_settings, codec, "geo.cep-matches", "CepMatch",
                    [cep_match("m-acme", "acme"), cep_match("m-globex", "globex")], "key")
    wait_for(lambda: http("GET", f"{base}/api/v1/alerts")[1]["total"] == 2, 30, what="alert statuses")
    wait_for(lambda: http("GET", f"{base}/api/v1/cep/matches")[1]["total"] == 2, 30, what="matches")
    assert [a["alert_id"] for a in http("GET", f"{base}/api/v1/alerts", key=GLOBEX)[1]["items"]] == ["a-globex"]
    assert http("GET", f"{base}/api/v1/alerts/a-acme", key=GLOBEX)[0] == 404
    assert http("GET", f"{base}/api/v1/alerts/a-acme", key=ACME)[0] == 200
    assert http("GET", f"{base}/api/v1/alerts?tenant_id=acme", key=GLOBEX)[0] == 403
    assert [m["match_id"] for m in http("GET", f"{base}/api/v1/cep/matches", key=GLOBEX)[1]["items"]] == ["m-globex"]
    assert http("GET", f"{base}/api/v1/cep/matches?tenant_id=acme", key=GLOBEX)[0] == 403
    assert http("GET", f"{base}/api/v1/cep/aggregates/p?tenant_id=acme", key=GLOBEX)[0] == 403
    for path in ("/api/v1/dlq", "/api/v1/dlq/x", "/api/v1/dlq/x/redrive"):
        method = "POST" if path.endswith("redrive") else "GET"
        status, problem = http(method, base + path, key=GLOBEX)
        assert status == 403 and "operator" in problem["detail"], path
    assert http("GET", f"{base}/api/v1/dlq")[0] == 200
