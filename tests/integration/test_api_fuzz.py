"""schemathesis against the live API (issue 14, "Fuzz the whole API").

`geoflux api`, an evaluator and a job worker run against the real broker (and PostgreSQL for
the audit trail). Two tenants, acme (A) and globex (B), each own geofences, rules, channels,
silences, escalation policies, CEP patterns, jobs, alerts and matches; B's carry a marker
string that is nowhere in A's. Every operation of /api/v1/openapi.json is then called with
A's key, with generated valid and invalid requests (seeded: the same requests on every run),
path ids drawn half from the seeded ids of both tenants and half generated, and:

- no answer is a 5xx;
- every 4xx is an RFC 7807 problem document with a non-empty detail;
- no answer to A names tenant B or holds B-only text (B's marker, ids only B has) that A's
  request did not itself send (a 404 may echo the id asked for);
- status codes, media types and bodies are the ones the document declares (schemathesis's
  conformance checks: the document stays honest).

Operator-only operations are called with the operator key as well. The counts (requests,
2xx, 3xx, 4xx, 5xx) are printed at the end, per operation and in total; pytest-xdist does not
show a worker's output, so run this file with `-n 0` to see them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from connectors.kafka_admin import apply
from connectors.kafka_producer import ReliableProducer
from connectors.offsets import parse_instant_ms
from geoflux.errors import ValidationError
from geoflux.settings import KafkaSettings, ReplaySettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from services.api.routes_geoevent import parse_location
from services.api.routes_replay import parse_request
from streams.jobs.processes import PROCESSES
from tests.conftest import wait_for
from tests.integration.geo_helpers import OPERATOR_KEY, TENANT_KEYS, http, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

A, B = "acme", "globex"
KEY_A, KEY_B = TENANT_KEYS[A], TENANT_KEYS[B]
MARKER = "GLOBEX-ONLY-7f3c9a"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
POSITIVE, NEGATIVE = 12, 8  # examples per operation and mode: about 1,250 requests in all
SQUARE = {"type": "Polygon", "coordinates": [[[13.3, 52.5], [13.4, 52.5], [13.4, 52.6], [13.3, 52.6],
                                              [13.3, 52.5]]]}
CONFIG = {  # path -> (id field, A's object, B's extra fields carrying the marker)
    "/api/v1/alerts/rules": ("rule_id", {"rule_id": "r-depot", "severity": "high", "channels": ["ops"]},
                             {"title": MARKER}),
    "/api/v1/alerts/channels": ("name", {"name": "ops", "kind": "webhook",
                                         "settings": {"url": "http://127.0.0.1:9/hook", "secret": SECRET}},
                                {"settings": {"url": f"http://127.0.0.1:9/{MARKER}", "secret": SECRET}}),
    "/api/v1/silences": ("silence_id", {"silence_id": "s-night", "ends_ms": 4_070_908_800_000,
                                        "matchers": [{"name": "severity", "value": "info"}]},
                         {"comment": MARKER}),
    "/api/v1/alerts/escalations": ("policy_id", {"policy_id": "esc-1", "severities": ["high"],
                                                 "levels": [{"delay_s": 0, "channels": ["ops"]}]}, {}),
    "/api/v1/cep/patterns": ("pattern_id", {"pattern_id": "p-gap", "severity": "high",
                                            "kind": "track_gap", "within_s": 60}, {}),
}


def fence(gid: str, name: str) -> dict:
    return {"type": "Feature", "id": gid, "geometry": SQUARE, "properties": {"name": name}}


def create_for_b(base: str, path: str, body: dict, id_field: str | None) -> str:
    """B's object under A's id: ids are per tenant (issue 14 defect 0), so the API must take it."""
    oid = body["id"] if id_field is None else body[id_field]
    status, created = http("POST", base + path, body, key=KEY_B)
    assert status == 201, (path, created)
    return oid


def publish(kafka: KafkaSettings, logical: str, schema: str, records: list[tuple[str, dict]]) -> None:
    codec, producer, t = AvroCodec(), ReliableProducer(kafka), topic(logical, kafka)
    for key, rec in records:
        producer.send(t, codec.encode(t, schema, rec), key=key)
    producer.flush_or_raise()


def alert_status(alert_id: str, tenant: str, title: str) -> dict:
    now = int(time.time() * 1000)
    return {"alert_id": alert_id, "tenant_id": tenant, "status": "SENT", "channels": {"ops": "SENT"},
            "attempts": {"ops": 1}, "last_errors": {}, "fallback_of": {}, "reason": None,
            "rule_id": "r-depot", "severity": "high", "title": title, "created_ms": now,
            "delivered_ms": now, "delivered_by": {"ops": "ops"}, "updated_ms": now}


def cep_match(match_id: str, tenant: str, note: str) -> dict:
    return {"match_id": match_id, "pattern_id": "p-gap", "pattern_version": 1, "tenant_id": tenant,
            "key": "truck-1", "severity": "high", "event_ids": ["x"], "start_ms": 0, "end_ms": 1,
            "detail": {"note": note}}


def submit_job(base: str, key: str, process: str, inputs: dict) -> str:
    status, job = http("POST", f"{base}/processes/{process}/execution", {"inputs": inputs}, key=key,
                       headers={"Prefer": "respond-async"})
    assert status == 201, job
    wait_for(lambda: http("GET", f"{base}/jobs/{job['jobID']}", key=key)[1].get("status") == "successful",
             60, what=f"job {process}")
    return job["jobID"]


def seed(base: str, kafka: KafkaSettings) -> dict[str, list[str]]:
    """Both tenants' objects; returns the ids a path parameter is drawn from, per path prefix."""
    assert http("POST", f"{base}/api/v1/geofences", fence("depot", "depot"), key=KEY_A)[0] == 201
    ids = {"/api/v1/geofences": ["depot", create_for_b(base, "/api/v1/geofences", fence("depot", MARKER), None)]}
    for path, (id_field, body, b_extra) in CONFIG.items():
        status, created = http("POST", base + path, body, key=KEY_A)
        assert status == 201, (path, created)
        ids[path] = [body[id_field], create_for_b(base, path, {**body, **b_extra}, id_field)]
    ids["/api/v1/cep/aggregates"] = ids["/api/v1/cep/patterns"]
    publish(kafka, "alerts.status", "AlertStatus",
            [("a-acme", alert_status("a-acme", A, "depot entered")), ("a-globex", alert_status("a-globex", B, MARKER))])
    publish(kafka, "geo.cep-matches", "CepMatch",
            [("truck-1", cep_match("m-acme", A, "acme")), ("truck-1", cep_match("m-globex", B, MARKER))])
    ids["/api/v1/alerts"] = ["a-acme", "a-globex"]
    features = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": SQUARE, "properties": {"label": MARKER}}]}
    ids["/jobs"] = [submit_job(base, KEY_A, "buffer", {"geometry": SQUARE, "distance_m": 10}),
                    submit_job(base, KEY_B, "union", {"features": features, "by": "label"})]
    ids["/api/v1/tenants"] = [A, B]
    ids["/processes"] = sorted(PROCESSES)
    wait_for(lambda: http("GET", f"{base}/api/v1/alerts")[1]["total"] == 2, 30, what="alert statuses")
    wait_for(lambda: http("GET", f"{base}/api/v1/cep/matches")[1]["total"] == 2, 30, what="CEP matches")
    return ids


@pytest.fixture(scope="module")
def stack(bootstrap, postgres_dsn, tmp_path_factory):
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(kafka)
    logs, port = tmp_path_factory.mktemp("fuzz"), free_port()
    # a loaded CI machine must not turn a slow evaluator into a 504 the fuzzing counts as a 5xx
    env = {"GEOFLUX_PG_DSN": postgres_dsn, "GEOFLUX_JOBS_SYNC_WAIT_S": "10",
           "GEOFLUX_API_EVALUATE_TIMEOUT_S": "30"}
    procs = [start_api(kafka, port, logs, **env),
             start_cli(kafka, ["worker", "evaluator", "--instance", "0"], "evaluator", logs),
             start_cli(kafka, ["worker", "jobs", "--no-postgis"], "jobs", logs)]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
        probe = {"entity_id": "warm-up", "lon": 0.0, "lat": 0.0, "timestamp": 1}
        wait_for(lambda: http("POST", f"{base}/api/v1/geoevent/evaluate", probe, key=KEY_A)[0] == 200,
                 90, interval_s=1, what="the evaluator answering")
        yield base, kafka, logs
    finally:
        for p in procs:
            stop(p)


@pytest.fixture(scope="module")
def seeded(stack):
    base, kafka, _ = stack
    return seed(base, kafka)


# -- the run --------------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.by_op: dict[str, Counter] = {}
        self.failures: dict[tuple[str, str], str] = {}  # (operation, what) -> first example

    def count(self, op: str, status: int, seconds: float) -> None:
        c = self.by_op.setdefault(op, Counter())
        c["requests"] += 1
        c["ms"] += int(seconds * 1000)
        c[f"{status // 100}xx"] += 1

    def fail(self, op: str, what: str, example: str) -> None:
        self.failures.setdefault((op, what), example)

    def total(self) -> Counter:
        return sum(self.by_op.values(), Counter())


def _header(response, name: str) -> str:
    for k, v in response.headers.items():
        if k.lower() == name:
            return v[0] if isinstance(v, list) else v
    return ""


def _json_values(response) -> list:
    ctype = _header(response, "content-type")
    try:
        if "ndjson" in ctype:
            return [json.loads(line) for line in response.text.splitlines() if line.strip()]
        if "json" in ctype:
            return [json.loads(response.content or b"null")]
    except ValueError:
        return []
    return []


def _tenants_named(value) -> set[str]:
    if isinstance(value, dict):
        own = {value["tenant_id"]} if isinstance(value.get("tenant_id"), str) else set()
        # an `attributes` map is the caller's own free-form data: a key named tenant_id in it
        # (a run generated one) names no tenant; B's data there is caught by B's marker
        return own.union(*(_tenants_named(v) for k, v in value.items() if k != "attributes"))
    if isinstance(value, list):
        return set().union(*(_tenants_named(v) for v in value))
    return set()


def problem_defect(response) -> str | None:
    """Why a 4xx is not an RFC 7807 problem with a reason, or None."""
    if not _header(response, "content-type").startswith("application/problem+json"):
        return f"content type {_header(response, 'content-type')!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "body is not JSON"
    if not isinstance(body, dict) or body.get("status") != response.status_code \
            or not all(isinstance(body.get(k), str) for k in ("type", "title")):
        return f"not a problem document: {response.text[:200]}"
    if not isinstance(body.get("detail"), str) or not body["detail"].strip():
        return "no detail (reason)"
    return None


def leak(response, sent: str, b_only: set[str]) -> str | None:
    """Tenant B named, or B-only text the request did not carry, in an answer to tenant A."""
    named = set().union(*(_tenants_named(v) for v in _json_values(response))) - {A}
    if named:
        return f"names tenant(s) {sorted(named)}"
    shown = sorted(s for s in b_only if s in response.text and s not in sent)
    return f"shows B-only {shown}" if shown else None


def exercise(case, base: str, key: str | None, tally: Tally, b_only: set[str], tenant_a: bool) -> None:
    op = f"{case.method} {case.path}"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = case.call(base_url=base, headers=headers, allow_redirects=False, timeout=60)
    except Exception as exc:  # a connection dropped or timed out is a failure of the API too
        tally.count(op, 599, 0.0)
        tally.fail(op, "no answer", f"{type(exc).__name__}: {exc}"[:300])
        return
    status = response.status_code
    tally.count(op, status, response.elapsed)
    req = response.request
    sent = f"{req.url} {req.body if isinstance(req.body, str) else (req.body or b'').decode('utf-8', 'replace')}"
    example = (f"{status} for {req.method} {req.url[len(base):][:150]} {sent[len(req.url) + 1:][:300]!r}: "
               f"{response.text[:200]}")
    if status >= 500:
        tally.fail(op, f"{status}", example)
    elif status >= 400 and (why := problem_defect(response)):
        tally.fail(op, f"4xx not a problem ({why})", example)
    if tenant_a and (why := leak(response, sent, b_only)):
        tally.fail(op, f"cross-tenant: {why}", example)
    try:
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                 response_schema_conformance], headers=headers)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis raises its failures as a group
        for failure in getattr(exc, "exceptions", [exc]):
            tally.fail(op, f"document: {type(failure).__name__}", f"{example} :: {str(failure)[:300]}")


def strategy(operation, mode: GenerationMode, ids: dict[str, list[str]]):
    """Path ids half from the seeded ids of both tenants (for the path), half generated."""
    generated = operation.as_strategy(generation_mode=mode)
    path = operation.path
    names = [p.name for p in operation.path_parameters]
    pool = next((v for prefix, v in ids.items() if path.startswith(prefix + "/")), None)
    if not names or pool is None:
        return generated
    seeded = st.sampled_from(pool).flatmap(
        lambda oid: operation.as_strategy(generation_mode=mode, path_parameters={names[0]: oid}))
    return st.one_of(seeded, generated)


def fuzz(base: str, key: str | None, ids: dict, tally: Tally, b_only: set[str], tenant_a: bool,
         only_tags: set[str] | None = None) -> None:
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()
        if only_tags and not set(schema.get_tags(operation) or []) & only_tags:
            continue
        for mode, n in ((GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE)):
            @settings(max_examples=n, derandomize=True, database=None, deadline=None,
                      phases=[Phase.generate], suppress_health_check=list(HealthCheck),
                      verbosity=Verbosity.quiet)
            @given(strategy(operation, mode, ids))
            def run(case):
                exercise(case, base, key, tally, b_only, tenant_a)

            try:
                run()
            except Exception as exc:  # e.g. no invalid request exists for an operation
                if "Unsatisfiable" not in type(exc).__name__ and "unsatisfiable" not in str(exc).lower():
                    tally.fail(f"{operation.method.upper()} {operation.path}", f"generation ({mode.value})",
                               f"{type(exc).__name__}: {str(exc)[:300]}")


def report(tally: Tally, capsys) -> None:
    rows = sorted(tally.by_op.items())
    with capsys.disabled():
        print("\n\nschemathesis against the live API (seeded): requests per operation")
        print(f"{'operation':56} {'req':>5} {'2xx':>5} {'3xx':>4} {'4xx':>5} {'5xx':>4} {'s':>6}")
        for op, c in rows + [("TOTAL", tally.total())]:
            print(f"{op[:56]:56} {c['requests']:5} {c['2xx']:5} {c['3xx']:4} {c['4xx']:5} {c['5xx']:4} "
                  f"{c['ms'] / 1000:6.1f}")


def test_tenant_b_can_use_the_ids_tenant_a_uses(stack, seeded):
    """The seeding gave B its objects under A's ids where the API allowed it (create_for_b)."""
    base, _, _ = stack
    renamed = {path: pool for path, pool in seeded.items()
               if (path in CONFIG or path == "/api/v1/geofences") and pool[0] != pool[1]}
    assert not renamed, f"B's objects had to take other ids: {renamed}"
    # and each tenant reads its own object under the shared id
    assert http("GET", f"{base}/api/v1/geofences/depot", key=KEY_A)[1]["properties"]["name"] == "depot"
    assert http("GET", f"{base}/api/v1/geofences/depot", key=KEY_B)[1]["properties"]["name"] == MARKER


def test_fuzz_the_whole_api(stack, seeded, capsys):
    base, _, logs = stack
    b_only = {MARKER} | {oid for pool in seeded.values() for oid in pool if oid.startswith("globex")}
    b_only |= {seeded["/jobs"][1], "a-globex", "m-globex"}
    # the leak check has teeth: the operator's list of geofences holds B's, and it says so
    everyone = requests.get(f"{base}/api/v1/geofences", headers={"X-API-Key": OPERATOR_KEY}, timeout=30)
    assert leak(schemathesis.Response.from_any(everyone), "", b_only) == "names tenant(s) ['globex']"
    tally = Tally()
    started = time.monotonic()
    fuzz(base, KEY_A, seeded, tally, b_only, tenant_a=True)
    fuzz(base, OPERATOR_KEY, seeded, tally, b_only, tenant_a=False, only_tags={"operations"})
    report(tally, capsys)
    total = tally.total()
    assert total["requests"] > 1000, total  # the run reached the API, not just the generator
    assert len(tally.by_op) >= 60, sorted(tally.by_op)
    failures = "\n".join(f"- {op}: {what}\n    {example}" for (op, what), example in sorted(tally.failures.items()))
    assert not tally.failures, (f"{len(tally.failures)} defects in {time.monotonic() - started:.0f}s "
                                f"(API log: {logs}):\n{failures}")


def test_every_operation_that_needs_a_key_refuses_a_request_without_one(stack):
    base, _, _ = stack
    doc = requests.get(base + "/api/v1/openapi.json", timeout=30).json()
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if op.get("security") == []:
                continue
            url = base + path.replace("{id}", "depot").replace("{pattern_id}", "p-gap")
            for headers in ({}, {"Authorization": "Bearer not-a-key-but-long-enough"}):
                resp = requests.request(method.upper(), url, headers=headers, json={}, timeout=30)
                assert resp.status_code == 401, (method, path, resp.status_code, resp.text[:200])
                assert resp.headers["Content-Type"].startswith("application/problem+json")
                assert "API key" in resp.json()["detail"]
                checked += 1
    assert checked > 100


@pytest.mark.parametrize("body, reason", [
    ({"tenant_id": 0}, "tenant_id 0 must be"),  # was: written as tenant "default"
    ({"tenant_id": False}, "tenant_id False must be"),
    ({"timestamp": float("inf")}, "not an epoch millisecond"),  # was: 500 (OverflowError)
    ({"timestamp": 2**64}, "not an epoch millisecond"),
])
def test_what_the_fuzzing_found_in_evaluate_is_refused_with_the_reason(body, reason):
    loc = {"entity_id": "e1", "lon": 0.0, "lat": 0.0, "timestamp": 1, **body}
    with pytest.raises(ValidationError, match=reason):
        parse_location(loc)


def test_what_the_fuzzing_found_in_replay_is_refused_with_the_reason():
    with pytest.raises(ValidationError, match="cannot be replayed"):  # was: 500 (unhashable list)
        parse_request({"topic": [], "from": 0}, ReplaySettings(), 10)
    with pytest.raises(ValidationError, match="neither ISO 8601 nor epoch"):  # was: 500 (int("²"))
        parse_instant_ms("from", "²")
