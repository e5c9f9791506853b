"""Escalation, acknowledgement, resolution and the delivery SLA, end to end on the real broker
with local receivers standing in for the webhook, e-mail-relay and PagerDuty endpoints."""

import hashlib
import hmac
import json
import urllib.request

import pytest

from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.alert_helpers import (AlertConfig, StatusView, geofence_event,
                                             publish_events, start_pipeline)
from tests.integration.geo_helpers import TENANT_KEYS, http, kill, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PD_SECRET = "pd-webhook-secret"
ENV = {"GEOFLUX_ALERT_PAGERDUTY_WEBHOOK_SECRET": PD_SECRET}


@pytest.fixture
def env(kafka_settings, tmp_path):
    codec = AvroCodec()
    hook, levels, pd = FakeReceiver(), FakeReceiver(), FakeReceiver(Answer(202, '{"status": "success"}'))
    config = AlertConfig(kafka_settings, codec).start()
    for name, url in (("primary", hook.url + "/primary"), ("level-1", levels.url + "/l1"),
                      ("level-2", levels.url + "/l2")):
        config.channels.put({"name": name, "kind": "webhook", "tenant_id": "acme",
                             "settings": {"url": url, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
    config.channels.put({"name": "pager", "kind": "pagerduty", "tenant_id": "acme",
                         "settings": {"url": pd.url + "/enqueue", "routing_key": "R0UT1NG"}})
    statuses = StatusView(kafka_settings, codec)
    procs = {}
    yield {"codec": codec, "config": config, "statuses": statuses, "procs": procs, "hook": hook,
           "levels": levels, "pd": pd, "settings": kafka_settings, "tmp": tmp_path}
    for p in procs.values():
        stop(p)
    statuses.close()
    config.close()
    for r in (hook, levels, pd):
        r.close()


def by_path(receiver, path):
    return [r for r in receiver.received() if r.path == path]


def alert_id_of(statuses, entity):
    for st in statuses.snapshot().values():
        if st["title"].startswith(entity + " "):
            return st["alert_id"]
    return None


def test_levels_fire_on_time_with_override_stop_on_ack_and_survive_sigkill(env):
    c = env["config"]
    c.escalations.put({"policy_id": "oncall", "tenant_id": "acme", "severities": [],
                       "levels": [{"delay_s": 8, "channels": ["level-1"]},
                                  {"delay_s": 14, "channels": ["level-2"], "severity_override": "critical"}]})
    c.rules.put({"rule_id": "r1", "tenant_id": "acme", "severity": "high", "channels": ["primary"],
                 "match": {"event_type": "ENTER"}, "title": "{entity_id} entered {geofence_id}",
                 "escalation_policy": "oncall"})
    env["procs"].update(start_pipeline(env["settings"], env["tmp"], **ENV))
    port = free_port()
    env["procs"]["api"] = start_api(env["settings"], port, env["tmp"], **ENV)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")  # so the ack is not late
    publish_events(env["settings"], env["codec"], [geofence_event(1, entity="v-esc"),
                                                   geofence_event(2, entity="v-ack")])
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("SENT", 0) == 2, 60, what="both alerts SENT")
    escalating, acked = alert_id_of(statuses, "v-esc"), alert_id_of(statuses, "v-ack")
    assert http("POST", f"{base}/api/v1/alerts/{acked}/ack", {"note": "on it"}, key=TENANT_KEYS["globex"])[0] == 404
    # the API's status view follows alerts.status: it knows the alert a moment after our collector
    status, body = wait_for(lambda: (r := http("POST", f"{base}/api/v1/alerts/{acked}/ack", {"note": "on it"},
                                               key=TENANT_KEYS["acme"]))[0] != 404 and r, 30, what="the ack accepted")
    assert status == 202 and body["action"] == "ACK"
    wait_for(lambda: statuses.snapshot()[acked]["status"] == "ACKNOWLEDGED", 30, what="ack applied")
    created = statuses.snapshot()[escalating]["created_ms"]
    levels = env["levels"]
    wait_for(lambda: by_path(levels, "/l1"), 30, what="level 1")
    first = by_path(levels, "/l1")[0]
    assert first.at * 1000 >= created + 8000  # never early
    assert first.json()["data"]["alert_id"] == escalating and first.json()["data"]["severity"] == "high"
    # SIGKILL the stage that owns the timers between the levels; its successor fires level 2
    kill(env["procs"]["status"])
    env["procs"]["status"] = start_cli(env["settings"], ["worker", "alert-status"], "alert-status-2", env["tmp"])
    wait_for(lambda: by_path(levels, "/l2"), 60, what="level 2 after the restart")
    second = by_path(levels, "/l2")[0]
    assert second.at * 1000 >= created + 14_000
    assert second.json()["data"]["severity"] == "critical"  # the level's override
    everything = {"primary": "SENT", "level-1": "SENT", "level-2": "SENT"}
    wait_for(lambda: statuses.snapshot()[escalating]["channels"] == everything, 30,
             what="both levels' outcomes in the status")
    st = statuses.snapshot()[escalating]
    assert st["escalation_level"] == 2 and st["severity"] == "critical" and st["next_escalation_ms"] is None
    # each level reached its receiver under one idempotency key; the acknowledged alert never escalated
    ids = {r.headers["webhook-id"] for r in levels.received()}
    assert ids == {f"{escalating}:level-1:esc1", f"{escalating}:level-2:esc2"}
    assert statuses.snapshot()[acked]["escalation_level"] == 0
    assert statuses.snapshot()[acked]["acknowledged_by"].startswith("key:")


def test_source_resolution_pagerduty_ack_webhook_and_api_resolve(env):
    c = env["config"]
    c.rules.put({"rule_id": "zone", "tenant_id": "acme", "severity": "critical", "channels": ["pager"],
                 "match": {"event_type": "ENTER", "geofence_id": "zone-7"},
                 "resolve_when": {"event_type": "EXIT"}, "title": "{entity_id} in {geofence_id}"})
    env["procs"].update(start_pipeline(env["settings"], env["tmp"], **ENV))
    port = free_port()
    env["procs"]["api"] = start_api(env["settings"], port, env["tmp"], **ENV)
    base = f"http://127.0.0.1:{port}"
    publish_events(env["settings"], env["codec"], [geofence_event(i, entity=f"v{i}") for i in (1, 2, 3)])
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("SENT", 0) == 3, 60, what="3 alerts SENT")
    a1, a2, a3 = (alert_id_of(statuses, f"v{i}") for i in (1, 2, 3))
    # v1 leaves the zone: the source resolves its alert, and PagerDuty gets `resolve` on the same key
    publish_events(env["settings"], env["codec"], [geofence_event(10, event_type="EXIT", entity="v1")])
    wait_for(lambda: statuses.snapshot()[a1]["status"] == "RESOLVED", 60, what="source resolution")
    assert statuses.snapshot()[a1]["resolved_by"].startswith("source:")
    pd = env["pd"]
    wait_for(lambda: any(r.json()["event_action"] == "resolve" for r in pd.received()), 30, what="PD resolve")
    resolve = [r.json() for r in pd.received() if r.json()["event_action"] == "resolve"]
    assert [r["dedup_key"] for r in resolve] == [a1]
    wait_for(lambda: statuses.snapshot()[a1]["resolution"] == {"pager": "SENT"}, 30, what="resolution SENT")
    # PagerDuty reports an acknowledgement through its signed webhook
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
    body = json.dumps({"event": {"event_type": "incident.acknowledged", "agent": {"summary": "Ana"},
                                 "data": {"type": "incident", "incident_key": a2}}}).encode()
    sig = "v1=" + hmac.new(PD_SECRET.encode(), body, hashlib.sha256).hexdigest()
    bad = http("POST", f"{base}/api/v1/webhooks/pagerduty", body, key=None,
               headers={"X-PagerDuty-Signature": "v1=" + "0" * 64})
    assert bad[0] == 401
    ok = http("POST", f"{base}/api/v1/webhooks/pagerduty", body, key=None,
              headers={"X-PagerDuty-Signature": f"v1=rotated-old-one,{sig}"})
    assert ok[0] == 202, ok
    wait_for(lambda: statuses.snapshot()[a2]["status"] == "ACKNOWLEDGED", 30, what="PD ack applied")
    assert statuses.snapshot()[a2]["acknowledged_by"] == "pagerduty:Ana"
    # a person resolves the third through the API: PagerDuty is told
    assert http("POST", f"{base}/api/v1/alerts/{a3}/resolve", key=TENANT_KEYS["acme"])[0] == 202
    wait_for(lambda: statuses.snapshot()[a3]["status"] == "RESOLVED", 30, what="API resolve")
    wait_for(lambda: sorted(r["dedup_key"] for r in (x.json() for x in pd.received())
                            if r["event_action"] == "resolve") == sorted([a1, a3]), 30, what="PD resolves")
    # an acknowledged alert that is then resolved by its source still resolves
    publish_events(env["settings"], env["codec"], [geofence_event(11, event_type="EXIT", entity="v2")])
    wait_for(lambda: statuses.snapshot()[a2]["status"] == "RESOLVED", 30, what="ack then resolve")


def test_sla_is_measured_and_a_breach_is_reported_around_the_failing_channel(env):
    c = env["config"]
    c.channels.put({"name": "ops-backup", "kind": "webhook", "tenant_id": "geoflux",
                    "settings": {"url": env["levels"].url + "/backup", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
    c.rules.put({"rule_id": "r1", "tenant_id": "acme", "severity": "high", "channels": ["primary"],
                 "match": {"event_type": "ENTER"}, "title": "{entity_id} entered {geofence_id}"})
    env["hook"].default = Answer(503, "down")  # the primary never delivers: every alert misses
    sla_env = {**ENV, "GEOFLUX_ALERT_SLA_TARGETS": json.dumps({"high": {"within_s": 1, "target": 0.99},
                                                               "critical": {"within_s": 30, "target": 0.999}}),
               "GEOFLUX_ALERT_SLA_MIN_SAMPLES": "3", "GEOFLUX_ALERT_SLA_CHECK_INTERVAL_S": "1",
               "GEOFLUX_ALERT_SLA_ALERT_CHANNELS": '["primary", "ops-backup"]'}
    env["procs"].update(start_pipeline(env["settings"], env["tmp"], **sla_env))
    env["procs"]["monitor"] = start_cli(env["settings"], ["worker", "sla-monitor"], "sla-monitor",
                                        env["tmp"], **sla_env)
    port = free_port()
    env["procs"]["api"] = start_api(env["settings"], port, env["tmp"], **sla_env)
    base = f"http://127.0.0.1:{port}"
    publish_events(env["settings"], env["codec"], [geofence_event(i) for i in range(5)])
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")

    def row(channel):
        items = http("GET", f"{base}/api/v1/alerts/sla?window_s=600")[1]["items"]
        return next((r for r in items if r["severity"] == "high" and r["channel"] == channel), None)

    wait_for(lambda: (row("primary") or {}).get("decided") == 5, 30, what="5 decided alerts")
    assert row("primary")["attainment"] == 0.0 and row("primary")["breached"]
    assert row("*")["missed"] == 5
    assert http("GET", f"{base}/api/v1/alerts/sla", key=TENANT_KEYS["globex"])[1]["items"] == []
    # our own alert, through ops-backup only: never through the channel that is failing
    backup = lambda: [r.json()["data"] for r in by_path(env["levels"], "/backup")]  # noqa: E731
    wait_for(lambda: any(d["labels"]["channel"] == "primary" for d in backup()), 60, what="SLA alert")
    own = next(d for d in backup() if d["labels"]["channel"] == "primary")
    assert own["tenant_id"] == "geoflux" and "Delivery SLA breached: high via primary" in own["title"]
    assert not any(r.path == "/primary" and "SLA" in r.body.decode() for r in env["hook"].requests)
    scraped = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    assert 'geoflux_alert_sla_attainment{channel="primary",severity="high"} 0.0' in scraped
