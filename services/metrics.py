"""Prometheus metrics: the only module that imports prometheus_client. Stream code reports
through sensor interfaces (`streams.alerting.sensor`); this turns them into metrics."""

from __future__ import annotations

from prometheus_client import (CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest,
                               start_http_server)

DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)

ALERT_DELIVERED = Histogram("geoflux_alert_delivery_seconds",
                            "Alert created to delivered, per severity and channel",
                            ["severity", "channel"], buckets=DELIVERY_BUCKETS)
ALERT_ATTEMPTS = Counter("geoflux_alert_delivery_attempts_total",
                         "Delivery attempts by channel and outcome", ["channel", "outcome"])
ALERT_FAILURES = Counter("geoflux_alert_delivery_failures_total",
                         "Failed delivery attempts by channel and error class",
                         ["channel", "error_class"])
ALERT_SUPPRESSED = Counter("geoflux_alerts_suppressed_total",
                           "Alerts suppressed by noise control, by reason", ["reason"])
DELIVERY_PENDING = Gauge("geoflux_alert_deliveries_pending",
                         "Delivery requests read but not finished (held, waiting or in flight)")


SLA_ATTAINMENT = Gauge("geoflux_alert_sla_attainment",
                       "Share of decided alerts delivered within the severity's target, over the SLA window",
                       ["severity", "channel"])
SLA_TARGET = Gauge("geoflux_alert_sla_target", "The attainment target per severity", ["severity"])


def record_sla(rows: list[dict]) -> None:
    for row in rows:
        SLA_TARGET.labels(row["severity"]).set(row["target"])
        if row["attainment"] is not None:
            SLA_ATTAINMENT.labels(row["severity"], row["channel"]).set(row["attainment"])


DLQ_DEPTH = Gauge("geoflux_dlq_depth", "Open (not redriven, not resolved) DLQ records", ["dlq"])

# -- every stage (streams.runtime.sensor.StageSensor) --------------------------------------------------
DLQ_RECORDS = Counter("geoflux_dlq_records_total",
                      "Records a stage set aside on its DLQ (committed), by stage and error class",
                      ["stage", "error_class"])
SIDE_INPUT_SKIPPED = Counter("geoflux_side_input_skipped_total",
                             "Side-input records (geofences, rules, silences, patterns) logged and skipped",
                             ["topic", "error_class"])
RESTORE_REMAINING = Gauge("geoflux_restore_remaining_records",
                          "Changelog records a partition's restore still has to read (0: restored)",
                          ["stage", "partition"])
RESTORE_REMAINING_S = Gauge("geoflux_restore_remaining_seconds",
                            "Estimated seconds a partition's restore still needs", ["stage", "partition"])
RECOVERIES = Counter("geoflux_stage_recoveries_total",
                     "Transactions given up and rewound, by stage and cause", ["stage", "cause"])


class PrometheusStageSensor:
    def dead_lettered(self, stage: str, error_class: str, count: int = 1) -> None:
        DLQ_RECORDS.labels(stage, error_class).inc(count)

    def skipped(self, topic: str, error_class: str) -> None:
        SIDE_INPUT_SKIPPED.labels(topic, error_class).inc()

    def restore_remaining(self, stage: str, partition: int, records: int, seconds: float) -> None:
        RESTORE_REMAINING.labels(stage, str(partition)).set(records)
        RESTORE_REMAINING_S.labels(stage, str(partition)).set(0 if records == 0 or seconds != seconds else seconds)

    def recovered(self, stage: str, cause: str) -> None:
        RECOVERIES.labels(stage, cause).inc()


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST


class PrometheusAlertSensor:
    def delivered(self, severity: str, channel: str, seconds_since_created: float) -> None:
        ALERT_DELIVERED.labels(severity, channel).observe(seconds_since_created)

    def attempt(self, channel: str, outcome: str, error_class: str | None) -> None:
        ALERT_ATTEMPTS.labels(channel, outcome).inc()
        if error_class:
            ALERT_FAILURES.labels(channel, error_class).inc()

    def suppressed(self, reason: str) -> None:
        ALERT_SUPPRESSED.labels(reason).inc()

    def pending(self, count: int) -> None:
        DELIVERY_PENDING.set(count)


def serve_metrics(port: int, host: str | None = None) -> None:
    if port:
        from geoflux.settings import MetricsSettings

        start_http_server(port, addr=host or MetricsSettings().host)


# -- the evaluator (streams.runtime.sensor) ------------------------------------------------------------
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

LOCATIONS_PROCESSED = Counter("geoflux_locations_processed_total",
                              "Location updates applied by the evaluator (committed)")
GEOFENCE_EVENTS = Counter("geoflux_geofence_events_total",
                          "Geofence events written by the evaluator (committed), by type", ["event_type"])
LOCATIONS_DEAD_LETTERED = Counter("geoflux_locations_dead_lettered_total",
                                  "Location updates sent to geo.locations.dlq, by error class",
                                  ["error_class"])
EVALUATION_LATENCY = Histogram("geoflux_evaluation_latency_seconds",
                               "Location produced to its evaluation committed (produced_ms to commit)",
                               buckets=LATENCY_BUCKETS)
EVALUATOR_BATCH = Histogram("geoflux_evaluator_batch_seconds",
                            "Processing time of one evaluator transaction", buckets=LATENCY_BUCKETS)


class PrometheusEvaluatorSensor:
    def committed(self, updates: int, events: dict[str, int], dead_lettered: dict[str, int],
                  latencies_s: list[float], batch_s: float) -> None:
        LOCATIONS_PROCESSED.inc(updates)
        for kind, n in events.items():
            GEOFENCE_EVENTS.labels(kind).inc(n)
        for cls, n in dead_lettered.items():
            LOCATIONS_DEAD_LETTERED.labels(cls).inc(n)
        for s in latencies_s:
            EVALUATION_LATENCY.observe(s)
        EVALUATOR_BATCH.observe(batch_s)


# -- the metrics exporter (services.metrics_exporter) -------------------------------------------
JOB_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 14400)

CONSUMER_LAG = Gauge("geoflux_consumer_lag", "Records behind the read_committed end, per consumer "
                     "group and partition", ["group", "topic", "partition"])
CONSUMER_COMMITTED = Gauge("geoflux_consumer_committed_offset", "Committed offset per group and partition",
                           ["group", "topic", "partition"])
JOB_QUEUE_WAIT = Histogram("geoflux_job_queue_wait_seconds", "Job created to started, per tier and process",
                           ["tier", "process"], buckets=JOB_BUCKETS)
JOB_RUN = Histogram("geoflux_job_run_seconds", "Job started to finished, per tier, process and outcome",
                    ["tier", "process", "status"], buckets=JOB_BUCKETS)
JOBS_FINISHED = Counter("geoflux_jobs_finished_total", "Jobs that reached a final status",
                        ["tier", "process", "status"])
ALERTS_BY_STATUS = Gauge("geoflux_alerts", "Alerts by current status and severity", ["status", "severity"])
EXPORTER_ERRORS = Counter("geoflux_exporter_errors_total", "Failed collection rounds", ["what"])


def record_lags(lags) -> None:
    CONSUMER_LAG.clear()
    CONSUMER_COMMITTED.clear()
    for row in lags:
        labels = (row.group, row.topic, str(row.partition))
        CONSUMER_LAG.labels(*labels).set(row.lag)
        CONSUMER_COMMITTED.labels(*labels).set(row.committed)


def record_job_finished(tier: str, process: str, status: str, wait_s: float | None,
                        run_s: float | None) -> None:
    JOBS_FINISHED.labels(tier, process, status).inc()
    if wait_s is not None:
        JOB_QUEUE_WAIT.labels(tier, process).observe(wait_s)
    if run_s is not None:
        JOB_RUN.labels(tier, process, status).observe(run_s)


def record_alert_counts(counts: dict[tuple[str, str], int]) -> None:
    ALERTS_BY_STATUS.clear()
    for (status, severity), n in counts.items():
        ALERTS_BY_STATUS.labels(status, severity).set(n)


def record_dlq_depth(name: str, depth: int) -> None:
    DLQ_DEPTH.labels(name).set(depth)


def exporter_error(what: str) -> None:
    EXPORTER_ERRORS.labels(what).inc()
