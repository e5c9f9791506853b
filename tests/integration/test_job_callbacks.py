"""Job callbacks at a real local HTTP receiver: signed with the subscriber's own secret when it
gave one, else with the install's; the signature verifies as documented; a subscriber's secret
is never echoed by the API nor carried in clear on any topic."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError

from schemas.catalogue import topic
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import FakeReceiver
from tests.integration.alert_helpers import FAST
from tests.integration.geo_helpers import OPERATOR_KEY, TENANT_KEYS, http, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

INSTALL = "install-secret-generated-per-install-0001"
OWN = "acme-own-callback-secret-7f3a9"
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def verifies(request, secret: str) -> bool:
    """What a subscriber does: HMAC-SHA256 over "{webhook-id}.{webhook-timestamp}.{body}"."""
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    mac = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(request.headers["webhook-signature"], f"v1,{mac}")


def raw_values(settings, logical) -> bytes:
    """Every record value on the topic, as bytes (aborted transactions included)."""
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    c.subscribe([topic(logical, settings)])
    values, eof = [], set()
    deadline = time.monotonic() + 30
    try:
        while len(eof) < settings.partitions:
            assert time.monotonic() < deadline, f"{logical} not read to its end in 30 s"
            for m in c.consume(500, 0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                values.append(m.value() or b"")
    finally:
        c.close()
    return b"".join(values)


def test_callbacks_are_signed_per_subscriber_and_the_secret_never_shows(kafka_settings, tmp_path):
    secret_file = tmp_path / "callback-secret"
    secret_file.write_text(INSTALL)
    env = {"GEOFLUX_ALERT_CALLBACK_SECRET_FILE": str(secret_file)}
    port = free_port()
    procs = [start_api(kafka_settings, port, tmp_path, **env),
             start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **env),
             start_cli(kafka_settings, ["worker", "delivery"], "delivery", tmp_path, **FAST, **env)]
    base = f"http://127.0.0.1:{port}"
    hook = FakeReceiver()
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="API port")
        acme = TENANT_KEYS["acme"]
        status, own = http("POST", f"{base}/processes/convex-hull/execution", key=acme,
                           headers={"Prefer": "respond-async"},
                           body={"inputs": {"geometry": SQUARE}, "subscriber": {
                               "successUri": hook.url + "/own", "secret": OWN}})
        assert status == 201 and OWN not in json.dumps(own), own
        status, plain = http("POST", f"{base}/processes/buffer/execution", key=acme,
                             headers={"Prefer": "respond-async"},
                             body={"inputs": {"geometry": SQUARE, "distance_m": 5},
                                   "subscriber": {"successUri": hook.url + "/plain"}})
        assert status == 201
        wait_for(lambda: {r.path for r in hook.received()} >= {"/own", "/plain"}, 60,
                 what="both callbacks delivered")
        by_path = {r.path: r for r in hook.received()}
        assert verifies(by_path["/own"], OWN) and not verifies(by_path["/own"], INSTALL)
        assert verifies(by_path["/plain"], INSTALL)
        assert by_path["/own"].json()["data"]["jobID"] == own["jobID"]
        # never echoed: not by the job, the job list, nor to an operator
        answers = [http("GET", f"{base}/jobs/{own['jobID']}", key=acme)[1],
                   http("GET", f"{base}/jobs", key=acme)[1],
                   http("GET", f"{base}/jobs/{own['jobID']}/results", key=acme)[1],
                   http("GET", f"{base}/jobs?limit=100", key=OPERATOR_KEY)[1]]
        assert OWN not in json.dumps(answers)
        # ...and never in clear on a topic: the API sealed it, only the delivery worker opens it
        for logical in ("jobs.requests", "alerts.deliveries", "jobs.status"):
            assert OWN.encode() not in raw_values(kafka_settings, logical), logical
        # a secret that cannot be one is refused with the reason
        status, problem = http("POST", f"{base}/processes/convex-hull/execution", key=acme,
                               body={"inputs": {"geometry": SQUARE}, "subscriber": {
                                   "successUri": hook.url + "/x", "secret": "short"}})
        assert status == 400 and "subscriber.secret" in problem["detail"]
    finally:
        hook.close()
        for p in procs:
            stop(p)
