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


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    if port:
        start_http_server(port, addr=host)
