"""Alert configuration, alert status and DLQ over HTTP and the CLI, with the pipeline running."""

import json
import subprocess
import urllib.request
import sys

import pytest

from services.devstack.local_process import free_port, port_is_open
from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.alert_helpers import geofence_event, publish_events, start_pipeline
from tests.integration.geo_helpers import http, start_api, stop, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def stack(kafka_settings, tmp_path):
    port = free_port()
    receiver = FakeReceiver(Answer(503, "down"))
    procs = {"api": start_api(kafka_settings, port, tmp_path)}
    procs.update(start_pipeline(kafka_settings, tmp_path))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        yield base, receiver, kafka_settings
    finally:
        for p in procs.values():
            stop(p)
        receiver.close()


def cli(settings, *args):
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True,
                          text=True, env=worker_env(settings), timeout=120)


def test_alert_config_status_and_dlq_over_http_and_cli(stack, tmp_path):
    base, receiver, settings = stack
    ch = {"name": "hook", "kind": "webhook", "tenant_id": "acme",
          "settings": {"url": receiver.url + "/h", "secret": "top-secret"}}
    status, body = http("POST", f"{base}/api/v1/alerts/channels", ch)
    assert status == 201 and body["settings"]["secret"] == "***"
    status, problem = http("POST", f"{base}/api/v1/alerts/channels", {**ch, "kind": "fax"})
    assert status == 422 and "kind must be one of" in problem["detail"]
    rule = {"rule_id": "enter", "tenant_id": "acme", "severity": "high", "channels": ["hook"],
            "match": {"event_type": "ENTER"}, "title": "{entity_id} in {geofence_id}"}
    assert http("POST", f"{base}/api/v1/alerts/rules", rule)[0] == 201
    status, problem = http("POST", f"{base}/api/v1/alerts/rules", {**rule, "rule_id": "x",
                                                                   "title": "{speed}"})
    assert status == 422 and "unknown field" in problem["detail"]
    assert http("POST", f"{base}/api/v1/alerts/rules", rule)[0] == 422  # exists: use PUT
    status, body = http("PUT", f"{base}/api/v1/alerts/rules/enter", {**rule, "severity": "critical"})
    assert status == 200 and body["version"] == 2 and body["severity"] == "critical"
    silence = {"tenant_id": "acme", "matchers": [{"name": "entity_id", "value": "nobody"}],
               "ends_ms": 4_000_000_000_000}
    status, sil = http("POST", f"{base}/api/v1/silences", silence)
    assert status == 201 and sil["silence_id"]

    publish_events(settings, AvroCodec(), [geofence_event(1)])
    # the receiver is down: 3 attempts, then the DLQ
    wait_for(lambda: http("GET", f"{base}/api/v1/alerts?status=DEAD_LETTERED")[1]["total"] == 1,
             60, what="a DEAD_LETTERED alert")
    alert = http("GET", f"{base}/api/v1/alerts?status=DEAD_LETTERED")[1]["items"][0]
    # the status may be read while its last outcome is still on its way: wait for the three attempts
    detail = wait_for(lambda: (d := http("GET", f"{base}/api/v1/alerts/{alert['alert_id']}")[1])
                      ["attempts"] == {"hook": 3} and d, 30, what="the three attempts in the alert's status")
    assert "503" in detail["last_errors"]["hook"]
    assert detail["severity"] == "critical" and detail["title"] == "truck-1 in zone-7"
    wait_for(lambda: http("GET", f"{base}/api/v1/dlq?queue=alerts")[1]["total"] == 1, 30,
             what="the DLQ entry")
    [entry] = http("GET", f"{base}/api/v1/dlq?queue=alerts")[1]["items"]
    listed = cli(settings, "dlq", "list")
    assert listed.returncode == 0 and entry["dlq_id"] in listed.stdout
    shown = cli(settings, "dlq", "show", entry["dlq_id"])
    assert json.loads(shown.stdout)["original"]["channel"] == "hook"
    receiver.default = Answer(200, "ok")
    redriven = cli(settings, "dlq", "redrive", entry["dlq_id"])
    assert redriven.returncode == 0 and "alerts.deliveries" in redriven.stdout
    wait_for(lambda: http("GET", f"{base}/api/v1/alerts/{alert['alert_id']}")[1]["status"] == "SENT",
             60, what="the redriven alert SENT")
    wait_for(lambda: http("GET", f"{base}/api/v1/dlq?queue=alerts")[1]["total"] == 0, 30,
             what="the DLQ entry closed")
    assert http("POST", f"{base}/api/v1/dlq/{entry['dlq_id']}/redrive")[0] == 404  # once only
    assert http("GET", f"{base}/api/v1/dlq/nope")[0] == 404
    scraped = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
    assert 'geoflux_dlq_depth{dlq="alerts"} 0.0' in scraped


def test_alerts_load_file_validates_everything_first(kafka_settings, tmp_path):
    good = {"channels": [{"name": "c", "kind": "slack", "tenant_id": "t",
                          "settings": {"url": "http://127.0.0.1:9/x"}}],
            "rules": [{"rule_id": "r", "tenant_id": "t", "severity": "info", "channels": ["c"]}]}
    bad = {**good, "rules": good["rules"] + [{"rule_id": "r2", "tenant_id": "t", "severity": "loud",
                                              "channels": ["c"]}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    (tmp_path / "good.json").write_text(json.dumps(good))
    out = cli(kafka_settings, "alerts", "load", str(tmp_path / "bad.json"))
    assert out.returncode == 1 and "rules[1]: severity must be one of" in out.stderr
    out = cli(kafka_settings, "alerts", "load", str(tmp_path / "good.json"))
    assert out.returncode == 0 and "1 channels, 1 rules, 0 silences" in out.stdout
