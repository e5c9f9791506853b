"""Jobs raise alerts through the real alert pipeline (gate, status, delivery) to a webhook
receiver: an SLA breach for a job held in the queue, and one alert — de-duplicated — for a job
that fails permanently twice (the second time after a redrive from the DLQ)."""

import json

import pytest

from schemas.codec import AvroCodec
from services.control.alert_config import AlertConfig
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import FakeReceiver
from tests.integration.alert_helpers import FAST, start_pipeline
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
ENV = {
    # channels per tenant and severity come from configuration, not from code
    "GEOFLUX_JOB_ALERTS_CHANNELS": json.dumps({"acme": {"critical": ["ops-hook"], "high": ["ops-hook"]}}),
    "GEOFLUX_JOB_ALERTS_QUEUE_SLA_S": json.dumps({"sleep": 2}),  # seconds in tests; default 5 min
    "GEOFLUX_JOB_ALERTS_TICK_INTERVAL_S": "0.2",
    # area-length forced onto a tier this worker does not run: a permanent failure, every time
    "GEOFLUX_JOBS_TIERS": json.dumps({"area-length": "postgis"}),
}


def alerts_by_kind(receiver):
    return [r.json()["data"]["labels"] for r in receiver.received()]


def test_sla_breach_and_a_permanent_failure_raise_one_alert_each(kafka_settings, tmp_path):
    receiver = FakeReceiver()
    config = AlertConfig(kafka_settings, AvroCodec()).start()
    config.channels.put({"name": "ops-hook", "kind": "webhook", "tenant_id": "acme",
                         "settings": {"url": receiver.url + "/hook", "secret": "s3cret"}})
    port = free_port()
    procs = start_pipeline(kafka_settings, tmp_path)
    procs["job-alerts"] = start_cli(kafka_settings, ["worker", "job-alerts"], "job-alerts", tmp_path, **ENV)
    procs["api"] = start_api(kafka_settings, port, tmp_path, **ENV, **FAST)
    base = f"http://127.0.0.1:{port}"
    key = TENANT_KEYS["acme"]
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API port")
        # no job worker runs yet: the job is held in the queue past its 2 s limit
        status, held = http("POST", f"{base}/processes/sleep/execution", {"inputs": {"seconds": 0.2}},
                            key=key, headers={"Prefer": "respond-async"})
        assert status == 201, held
        wait_for(lambda: any(a.get("kind") == "sla-breach" for a in alerts_by_kind(receiver)), 60,
                 what="the SLA-breach alert at the webhook")
        sla = [a for a in alerts_by_kind(receiver) if a.get("kind") == "sla-breach"]
        assert sla[0]["job_id"] == held["jobID"] and sla[0]["process_id"] == "sleep"
        assert int(sla[0]["duration_ms"]) >= 2000
        # now a worker: the held job runs; area-length fails permanently (priority 9: critical)
        procs["jobs"] = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path, **ENV)
        status, bad = http("POST", f"{base}/processes/area-length/execution",
                           {"inputs": {"geometry": SQUARE}, "priority": 9}, key=key,
                           headers={"Prefer": "respond-async"})
        assert status == 201, bad
        wait_for(lambda: any(a.get("kind") == "failed" for a in alerts_by_kind(receiver)), 60,
                 what="the failure alert at the webhook")
        failed = [a for a in alerts_by_kind(receiver) if a.get("kind") == "failed"][0]
        assert failed["job_id"] == bad["jobID"] and failed["severity"] == "critical"
        assert failed["error_class"] == "permanent" and "postgis" in failed["error_message"]
        assert failed["tenant_id"] == "acme" and failed["retry_count"] == "0"
        # the same failure recorded again, as a worker that crashed before committing writes it
        # on its redo: the same alert, which the gate drops
        _repeat_dlq_record(kafka_settings, bad["jobID"])
        wait_for(lambda: _suppressed(kafka_settings, bad["jobID"]), 30, what="the repeat suppressed by the gate")
        kinds = [a.get("kind") for a in alerts_by_kind(receiver) if a.get("job_id") == bad["jobID"]]
        assert kinds == ["failed"]  # exactly one delivered
        assert len([a for a in alerts_by_kind(receiver) if a.get("kind") == "sla-breach"]) == 1
    finally:
        for p in procs.values():
            stop(p)
        config.close()
        receiver.close()


def _records(settings, logical, schema):
    from confluent_kafka import Consumer, TopicPartition

    from schemas.catalogue import topic

    t = topic(logical, settings)
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "probe", "enable.auto.commit": False})
    codec = AvroCodec()
    out = []
    try:
        parts = c.list_topics(t, timeout=10).topics[t].partitions
        c.assign([TopicPartition(t, p, 0) for p in parts])
        while msgs := c.consume(500, 1.0):
            out += [(m, codec.decode(m.value(), schema)) for m in msgs if not m.error()]
    finally:
        c.close()
    return out


def _repeat_dlq_record(settings, job_id) -> None:
    from connectors.kafka_producer import ReliableProducer
    from schemas.catalogue import topic

    [(msg, rec)] = [(m, r) for m, r in _records(settings, "jobs.dlq", "DlqRecord")
                    if r["original_key"] == job_id.encode()]
    p = ReliableProducer(settings)
    p.deliver([(topic("jobs.dlq", settings), msg.value(), job_id)])


def _suppressed(settings, job_id) -> bool:
    from confluent_kafka import Consumer, TopicPartition

    from schemas.catalogue import topic

    t = topic("alerts.alerts", settings)
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "probe", "enable.auto.commit": False})
    codec = AvroCodec()
    try:
        parts = c.list_topics(t, timeout=10).topics[t].partitions
        c.assign([TopicPartition(t, p, 0) for p in parts])
        seen = []
        while True:
            msgs = c.consume(500, 1.0)
            if not msgs:
                break
            for m in msgs:
                if not m.error():
                    a = codec.decode(m.value(), "Alert")
                    if a["labels"].get("job_id") == job_id:
                        seen.append(a["suppressed_reason"])
        return len(seen) >= 2 and seen[0] is None and all(r for r in seen[1:])
    finally:
        c.close()
