"""`geoflux worker metrics`: the platform's metrics that no single worker owns, for Prometheus.

- consumer-group lag per group and partition (committed offsets against the read_committed
  end, `connectors.lag`), every `interval_s`;
- job queue wait (created -> started) and run time (started -> finished) per tier and
  process, from `jobs.status` (one observation per job reaching a final status; the topic is
  compacted, so after a restart the histograms hold every job the topic still keeps);
- alerts by current status and severity, from `alerts.status`;
- DLQ depth (open records) per queue.

Workers export their own counters on `--metrics-port` (evaluator, alert gate, delivery, SLA
monitor); the API serves /metrics. Run one exporter per cluster.
"""

from __future__ import annotations

import threading
from collections import Counter

import structlog

from connectors.kafka_admin import admin_client
from connectors.lag import group_lags
from connectors.topic_reader import TopicReader
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services import metrics
from services.control.dlq import DLQ_VALUE_SCHEMAS, DlqView

log = structlog.get_logger("geoflux.exporter")
FINAL = ("successful", "failed", "dismissed")


def _seconds(start_ms: int | None, end_ms: int | None) -> float | None:
    if not start_ms or not end_ms:
        return None
    return max(0.0, (end_ms - start_ms) / 1000)


class MetricsExporter:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, interval_s: float = 15.0) -> None:
        self.kafka, self.interval_s = kafka, interval_s
        self.admin = admin_client(kafka)
        self.finished_jobs: set[str] = set()
        self.alerts: dict[str, tuple[str, str]] = {}
        self.jobs = TopicReader(kafka, topic("jobs.status", kafka), "JobStatus", codec, self._job)
        self.alert_reader = TopicReader(kafka, topic("alerts.status", kafka), "AlertStatus", codec,
                                        self._alert)
        self.dlqs = {name: DlqView(kafka, codec, name, schema) for name, schema in DLQ_VALUE_SCHEMAS.items()}

    def _job(self, job_id: str, rec: dict | None, _msg) -> bool:
        if rec is None or rec["status"] not in FINAL or job_id in self.finished_jobs:
            return False
        self.finished_jobs.add(job_id)
        metrics.record_job_finished(rec.get("tier") or "unknown", rec["process_id"], rec["status"],
                                    _seconds(rec.get("created_ms"), rec.get("started_ms")),
                                    _seconds(rec.get("started_ms"), rec.get("finished_ms")))
        return True

    def _alert(self, alert_id: str, rec: dict | None, _msg) -> bool:
        if rec is None:
            self.alerts.pop(alert_id, None)
        else:
            self.alerts[alert_id] = (rec["status"], rec["severity"])
        return True

    def start(self) -> "MetricsExporter":
        self.jobs.load().follow()
        self.alert_reader.load().follow()
        for view in self.dlqs.values():
            view.start()
        return self

    def collect(self) -> None:
        try:
            metrics.record_lags(group_lags(self.admin, self.kafka))
        except Exception as exc:  # the broker answers next round; the failure is counted
            metrics.exporter_error("lag")
            log.warning("lag collection failed", error=str(exc))
        with self.alert_reader.lock:
            metrics.record_alert_counts(Counter(self.alerts.values()))
        for name, view in self.dlqs.items():
            try:
                metrics.record_dlq_depth(name, len(view.list()))
            except Exception as exc:  # a DLQ view that cannot answer is counted, others go on
                metrics.exporter_error(f"dlq:{name}")
                log.warning("dlq depth failed", queue=name, error=str(exc))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.collect()
            stop.wait(self.interval_s)

    def close(self) -> None:
        for closeable in (self.jobs, self.alert_reader, *self.dlqs.values()):
            closeable.close()
