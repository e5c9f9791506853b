"""Metrics after a scripted burst: the evaluator's counters and latency histogram, the alert
delivery histogram and the exporter's job, lag, alert and DLQ metrics equal what was done."""

import time
import urllib.request

import pytest

from geoflux.settings import JobSettings
from schemas.codec import AvroCodec
from services.control.jobs import JobsService
from services.devstack.local_process import free_port
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.alert_helpers import start_pipeline
from tests.integration.geo_helpers import (lag_is_zero, publish_fences, publish_locations, start_cli,
                                           stop)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ENTITIES, JOBS = 40, 4


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """The text exposition as {(name, sorted label pairs): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        name, labels = (head.split("{", 1) + [""])[:2]
        pairs = tuple(sorted(tuple(p.split("=", 1)) for p in labels.rstrip("}").split(",") if p))
        out[(name, tuple((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def total(metrics: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in metrics.items()
               if n == name and all((k, val) in ls for k, val in labels.items()))


def test_counters_and_histograms_match_a_scripted_burst(kafka_settings, tmp_path):
    codec = AvroCodec()
    receiver = FakeReceiver(Answer(200, "ok"))
    ports = {name: free_port() for name in ("evaluator", "delivery", "exporter")}
    procs = {"evaluator": start_cli(kafka_settings, ["worker", "evaluator", "--instance", "0", "--metrics-port",
                                            str(ports["evaluator"])], "evaluator", tmp_path),
             "jobs": start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path),
             "exporter": start_cli(kafka_settings, ["worker", "metrics", "--metrics-port",
                                                    str(ports["exporter"]), "--interval", "1"],
                                   "exporter", tmp_path),
             **start_pipeline(kafka_settings, tmp_path, metrics_port=ports["delivery"])}
    from services.control.alert_config import AlertConfig

    config = svc = None
    try:  # everything started is stopped, also when starting the rest fails
        config = AlertConfig(kafka_settings, codec).start()
        svc = JobsService(kafka_settings, codec, JobSettings()).start()
        config.channels.put({"name": "hook", "kind": "webhook", "tenant_id": "t",
                             "settings": {"url": receiver.url + "/h", "secret": "s3cret"}}, None)
        config.rules.put({"rule_id": "enter", "tenant_id": "t", "severity": "high", "channels": ["hook"],
                          "match": {"event_type": "ENTER"}, "title": "{entity_id} in {geofence_id}"}, None)
        publish_fences(kafka_settings, [{"type": "Feature", "id": "zone", "properties": {"name": "zone", "tenant_id": "t"},
                                         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}],
                       codec).close()
        wait_for(lambda: scrape_or_none(ports["evaluator"]) is not None, 60, what="evaluator metrics")
        now = int(time.time() * 1000)
        rows = [(f"e{i}", lon, 0.5, now + k * 1000) for i in range(ENTITIES)
                for k, lon in enumerate((-0.5, 0.5, 1.5))]  # outside, inside, outside: ENTER + EXIT
        rows += [("bad-1", 200.0, 0.5, now), ("bad-2", 0.5, 95.0, now)]  # out of range: DLQ
        publish_locations(kafka_settings, codec, rows)
        for i in range(JOBS):
            svc.submit("sleep", {"seconds": 0.2 + i / 100}, tenant_id="t")

        wait_for(lambda: lag_is_zero(kafka_settings), 90, what="the evaluator to commit the burst")
        ev = wait_for(lambda: (m := scrape(ports["evaluator"])) and
                      value(m, "geoflux_locations_processed_total") == ENTITIES * 3 and m, 30,
                      what="the evaluator's counters")
        assert value(ev, "geoflux_geofence_events_total", event_type="ENTER") == ENTITIES
        assert value(ev, "geoflux_geofence_events_total", event_type="EXIT") == ENTITIES
        assert total(ev, "geoflux_locations_dead_lettered_total") == 2
        assert value(ev, "geoflux_evaluation_latency_seconds_count") == ENTITIES * 3
        assert value(ev, "geoflux_evaluation_latency_seconds_bucket", le="+Inf") == ENTITIES * 3

        wait_for(lambda: value(scrape(ports["delivery"]), "geoflux_alert_delivery_seconds_count",
                               severity="high", channel="hook") == ENTITIES, 90,
                 what="one delivered alert per ENTER")
        assert len({r.headers.get("webhook-id") or r.body for r in receiver.requests}) == ENTITIES

        ex = wait_for(lambda: (m := scrape(ports["exporter"]))
                      and total(m, "geoflux_jobs_finished_total", status="successful") == JOBS
                      and value(m, "geoflux_alerts", status="SENT", severity="high") == ENTITIES
                      and value(m, "geoflux_dlq_depth", dlq="locations") == 2 and m, 90,
                      what="the exporter's job, alert and DLQ metrics")
        assert total(ex, "geoflux_job_queue_wait_seconds_count", process="sleep") == JOBS
        assert total(ex, "geoflux_job_run_seconds_count", process="sleep", status="successful") == JOBS
        assert total(ex, "geoflux_job_run_seconds_sum", process="sleep") >= 0.2 * JOBS
        group = kafka_settings.topic_prefix + "geoflux-evaluator"
        lags = {ls: v for (n, ls), v in ex.items() if n == "geoflux_consumer_lag" and ("group", group) in ls}
        assert len(lags) == kafka_settings.partitions and all(v <= 1 for v in lags.values()), lags
    finally:
        for part in (svc, config):
            if part is not None:
                part.close()
        for p in procs.values():
            stop(p)
        receiver.close()


def scrape_or_none(port: int):
    try:
        return scrape(port)
    except OSError:
        return None
