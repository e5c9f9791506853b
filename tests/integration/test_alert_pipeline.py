"""The alert pipeline end to end on the real broker, against real local receivers."""

import urllib.request
from collections import Counter

import pytest

from schemas.codec import AvroCodec
from services.control.dlq import DlqView, fresh_delivery
from services.devstack.local_process import free_port
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.alert_helpers import (AlertConfig, StatusView, geofence_event,
                                             publish_events, start_pipeline)
from tests.integration.geo_helpers import kill, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def receivers():
    primary, fallback = FakeReceiver(), FakeReceiver()
    yield primary, fallback
    primary.close()
    fallback.close()


@pytest.fixture
def env(kafka_settings, tmp_path, receivers):
    codec = AvroCodec()
    config = AlertConfig(kafka_settings, codec).start()
    primary, fallback = receivers
    config.channels.put({"name": "ops-hook", "kind": "webhook", "tenant_id": "acme",
                         "settings": {"url": primary.url + "/hook", "secret": "s3cret"}})
    config.channels.put({"name": "ops-slack", "kind": "slack", "tenant_id": "acme",
                         "settings": {"url": fallback.url + "/slack"}})
    statuses = StatusView(kafka_settings, codec)
    procs = {}
    yield {"codec": codec, "config": config, "statuses": statuses, "procs": procs,
           "settings": kafka_settings, "tmp": tmp_path}
    for p in procs.values():
        stop(p)
    statuses.close()
    config.close()


def rule(rule_id="r1", severity="high", **kw):
    return {"rule_id": rule_id, "tenant_id": "acme", "severity": severity,
            "match": {"event_type": "ENTER"}, "channels": ["ops-hook"],
            "title": "{entity_id} entered {geofence_id}", "body": "at {ts}", **kw}


def ids_received(receiver):
    return Counter(r.headers["webhook-id"] for r in receiver.received())


def test_outage_then_recovery_delivers_each_alert_once_in_the_expected_attempts(env, receivers):
    primary, _ = receivers
    env["config"].rules.put(rule())
    primary.fail_first(2)  # every delivery's first two attempts get a 503, the third succeeds
    env["procs"].update(start_pipeline(env["settings"], env["tmp"]))
    publish_events(env["settings"], env["codec"], [geofence_event(i) for i in range(20)])
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("SENT", 0) == 20, 90, what="20 alerts SENT")
    assert ids_received(primary) == Counter({k: 1 for k in ids_received(primary)})
    assert len(ids_received(primary)) == 20
    assert all(s["attempts"] == {"ops-hook": 3} for s in statuses.snapshot().values())
    assert all(s["delivered_ms"] >= s["created_ms"] for s in statuses.snapshot().values())


def test_never_recovering_channel_dead_letters_then_redrive_delivers(env, receivers):
    primary, _ = receivers
    primary.default = Answer(503, "down for good")
    env["config"].rules.put(rule())
    env["procs"].update(start_pipeline(env["settings"], env["tmp"]))
    publish_events(env["settings"], env["codec"], [geofence_event(i) for i in range(10)])
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("DEAD_LETTERED", 0) == 10, 90,
             what="10 alerts DEAD_LETTERED")
    dlq = DlqView(env["settings"], env["codec"], "alerts", "DeliveryAttempt",
                  rewrite=fresh_delivery).start()
    try:
        wait_for(lambda: len(dlq.list()) == 10, 30, what="10 DLQ entries")
        entry = dlq.list()[0]
        assert entry["error_class"] == "transient" and entry["attempts"] == 3
        assert "503" in entry["error_message"] and entry["original"]["channel"] == "ops-hook"
        assert entry["first_failure_ms"] <= entry["last_failure_ms"]
        primary.default = Answer(200, "ok")
        for e in dlq.list():
            dlq.redrive(e["dlq_id"], by="test")
        wait_for(lambda: statuses.by_status().get("SENT", 0) == 10, 60, what="redriven alerts SENT")
        assert dlq.list() == []
        assert len(ids_received(primary)) == 10
    finally:
        dlq.close()


def test_critical_alerts_reach_the_fallback_while_the_primary_is_down(env, receivers):
    primary, fallback = receivers
    primary.default = Answer(503, "down")
    env["config"].rules.put(rule(severity="critical", fallback_channel="ops-slack"))
    metrics_port = free_port()
    env["procs"].update(start_pipeline(env["settings"], env["tmp"], metrics_port=metrics_port))
    publish_events(env["settings"], env["codec"], [geofence_event(i) for i in range(15)])
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("SENT", 0) == 15, 60, what="15 alerts SENT")
    for s in statuses.snapshot().values():
        assert s["delivered_by"] == {"ops-hook": "ops-slack"}
        assert s["fallback_of"] == {"ops-hook": "ops-slack"}
    assert len(fallback.received()) == 15
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    assert 'geoflux_alert_delivery_seconds_count{channel="ops-slack",severity="critical"} 15.0' in metrics
    assert 'geoflux_alert_delivery_failures_total{channel="ops-hook",error_class="transient"}' in metrics


def test_noise_control_suppresses_with_reasons(env, receivers):
    env["config"].rules.put(rule())
    env["config"].silences.put({"silence_id": "quiet-truck", "tenant_id": "acme",
                                "matchers": [{"name": "entity_id", "value": "truck-99"}],
                                "ends_ms": 4_000_000_000_000})
    env["procs"].update(start_pipeline(env["settings"], env["tmp"]))
    dup = geofence_event(1)
    dup2 = dict(dup, event_id="another-event-same-fingerprint")
    publish_events(env["settings"], env["codec"], [dup, dup2, geofence_event(99)])
    statuses = env["statuses"]
    wait_for(lambda: len(statuses.snapshot()) == 3 and statuses.by_status().get("SENT") == 1, 60,
             what="one SENT, two SUPPRESSED")
    reasons = sorted(s["reason"] for s in statuses.snapshot().values() if s["status"] == "SUPPRESSED")
    assert reasons[0].startswith("duplicate") and reasons[1] == "silenced by quiet-truck"


def test_delivery_worker_sigkill_mid_burst_loses_nothing(env, receivers):
    primary, _ = receivers
    primary.default = Answer(200, "ok", hang_s=0.02)  # a receiver with some latency
    env["config"].rules.put(rule())
    procs = env["procs"]
    procs.update(start_pipeline(env["settings"], env["tmp"],
                                GEOFLUX_ALERT_PER_CHANNEL_CONCURRENCY="4"))
    n = 300
    publish_events(env["settings"], env["codec"], [geofence_event(i) for i in range(n)])
    wait_for(lambda: len(primary.received()) >= 60, 60, what="part of the burst delivered")
    kill(procs["delivery"])
    delivered_before_kill = len(ids_received(primary))
    assert delivered_before_kill < n, "the kill came after the burst: not mid-burst"
    procs["delivery"] = start_cli(env["settings"], ["worker", "delivery"], "alert-delivery-2",
                                  env["tmp"], **{"GEOFLUX_ALERT_PRIMARY_BACKOFF_S": "[0.2, 0.4]"})
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("SENT", 0) == n, 120, what=f"{n} alerts SENT")
    received = ids_received(primary)
    assert set(received) == {s["alert_id"] + ":ops-hook" for s in statuses.snapshot().values()}
    duplicates = sum(c - 1 for c in received.values())
    # at-least-once across a crash: re-sends carry the same webhook-id for the receiver to drop
    print(f"\nSIGKILL mid-burst: {n} alerts, {delivered_before_kill} delivered before the kill, "
          f"{duplicates} re-sent after restart (same webhook-id), 0 lost")


def test_gone_endpoint_is_disabled_and_exhausted_retries_are_abandoned(env, receivers):
    primary, fallback = receivers
    primary.default = Answer(503, "down")
    fallback.default = Answer(410, "channel_is_archived")
    env["config"].rules.put(rule(channels=["ops-hook", "ops-slack"]))
    env["procs"].update(start_pipeline(env["settings"], env["tmp"],
                                       GEOFLUX_ALERT_DLQ_BACKOFF_S="[0.3, 0.3]"))
    statuses = env["statuses"]
    publish_events(env["settings"], env["codec"], [geofence_event(0)])
    wait_for(lambda: any(s["channels"].get("ops-slack") == "DISABLED"
                         for s in statuses.snapshot().values()), 60, what="the 410 seen")
    publish_events(env["settings"], env["codec"], [geofence_event(i) for i in range(1, 5)])
    wait_for(lambda: statuses.by_status().get("FAILED", 0) == 5
             and all(s["channels"].get("ops-hook") == "ABANDONED" for s in statuses.snapshot().values()),
             90, what="5 alerts with one channel abandoned and one disabled")
    for s in statuses.snapshot().values():
        assert s["channels"] == {"ops-hook": "ABANDONED", "ops-slack": "DISABLED"}
        assert s["attempts"]["ops-hook"] == 5  # 3 primary + 2 from the DLQ (seed: 5 in all)
    # after the 410 the endpoint is disabled: later alerts do not call it at all
    assert len(fallback.received(ok_only=False)) == 1


def test_a_repeated_candidate_never_rewrites_a_delivered_alert(env, receivers, tmp_path):
    """Issue 14, defect 6: the same source record read again (a replay, a redrive) makes the
    same alert id; noise control suppresses the repeat. The delivered alert stays SENT with
    its creation time and escalation; the repeat is counted, never a new state of it."""
    from tests.integration.geo_helpers import http, start_api, OPERATOR_KEY
    from services.devstack.local_process import port_is_open

    primary, _ = receivers
    env["config"].escalations.put({"policy_id": "esc", "tenant_id": "acme", "severities": ["high"],
                                   "levels": [{"delay_s": 12, "channels": ["ops-hook"]}]})
    env["config"].rules.put(rule(dedup_window_s=600))
    env["procs"].update(start_pipeline(env["settings"], env["tmp"]))
    port = free_port()
    env["procs"]["api"] = start_api(env["settings"], port, tmp_path)
    event = geofence_event(1)
    publish_events(env["settings"], env["codec"], [event])
    statuses = env["statuses"]
    wait_for(lambda: statuses.by_status().get("SENT", 0) == 1, 90, what="the alert SENT")
    [(alert_id, first)] = statuses.snapshot().items()
    publish_events(env["settings"], env["codec"], [event])  # the same record again
    wait_for(lambda: statuses.snapshot()[alert_id].get("repeats") == 1, 60, what="the repeat counted")
    after = statuses.snapshot()[alert_id]
    assert after["status"] == "SENT" and after["created_ms"] == first["created_ms"]
    assert after["next_escalation_ms"] == first["next_escalation_ms"] is not None
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
    # the API's view follows the status topic: it may be a moment behind the collector above
    seen = {}

    def api_shows_the_repeat() -> bool:
        seen["status"], seen["body"] = http("GET", f"http://127.0.0.1:{port}/api/v1/alerts/{alert_id}",
                                            key=OPERATOR_KEY)
        return seen["status"] == 200 and seen["body"].get("repeats") == 1
    wait_for(api_shows_the_repeat, 30, what="the API's view of the repeat")
    body = seen["body"]
    assert body["status"] == "SENT" and body["repeats"] == 1, body
    # the escalation the repeat must not stop: level 1 reaches the receiver under its own key
    wait_for(lambda: any(r.headers["webhook-id"].endswith(":esc1") for r in primary.received()), 60,
             what="the escalation level after the repeat")
    assert statuses.snapshot()[alert_id]["status"] != "SUPPRESSED"


def test_a_channel_created_just_before_its_alert_is_used_and_an_unknown_one_is_dead_lettered(env, receivers):
    """The delivery worker follows the channel list in the background: a delivery that names a
    channel it has not read yet waits until the list is read to its end, and only a channel that
    is still missing then is a permanent error (with the reason), never a silent drop."""
    primary, _ = receivers
    env["procs"].update(start_pipeline(env["settings"], env["tmp"]))
    statuses = env["statuses"]
    env["config"].rules.put(rule())
    publish_events(env["settings"], env["codec"], [geofence_event(0)])
    wait_for(lambda: statuses.by_status().get("SENT", 0) == 1, 60, what="the pipeline up: one alert SENT")
    for i in range(5):  # each time: channel, rule and event back to back
        env["config"].channels.put({"name": f"new-hook-{i}", "kind": "webhook", "tenant_id": "acme",
                                    "settings": {"url": primary.url + f"/new-{i}", "secret": "s3cret"}})
        env["config"].rules.put(rule(f"new-{i}", channels=[f"new-hook-{i}"], match={"event_type": "EXIT"}))
        publish_events(env["settings"], env["codec"], [geofence_event(100 + i, event_type="EXIT")])
    env["config"].rules.put(rule("ghost", channels=["never-created"], match={"event_type": "DWELL"}))
    publish_events(env["settings"], env["codec"], [geofence_event(200, event_type="DWELL")])

    def delivered_paths():
        return {r.path for r in primary.received()}

    wait_for(lambda: {f"/new-{i}" for i in range(5)} <= delivered_paths(), 60, what="every new channel used")
    ghost = wait_for(lambda: [s for s in statuses.snapshot().values()
                              if s["channels"].get("never-created") == "DEAD_LETTERED"], 60,
                     what="the unknown channel dead-lettered")
    assert ghost[0]["last_errors"]["never-created"].startswith("permanent"), ghost[0]
    assert "unknown channel never-created" in ghost[0]["last_errors"]["never-created"], ghost[0]
    dlq = DlqView(env["settings"], env["codec"], "alerts", "DeliveryAttempt").start()
    try:
        entries = wait_for(lambda: [e for e in dlq.list() if "never-created" in e["error_message"]], 30,
                           what="the DLQ record of the unknown channel")
        assert [e["error_class"] for e in entries] == ["permanent"] and entries[0]["attempts"] == 1
        assert all("new-hook" not in e["error_message"] for e in dlq.list()), dlq.list()
    finally:
        dlq.close()
