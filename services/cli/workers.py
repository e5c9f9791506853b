"""`geoflux worker ...` and `geoflux api`: the long-running processes, one command each
(declared once in `services/workers.py`)."""

from __future__ import annotations

import click

from geoflux.settings import ApiSettings, GeofenceSettings, KafkaSettings
from services.cli.base import checks_credentials, codec, main, one_line_errors


# -- workers and services ---------------------------------------------------------------------
def _collector_thresholds() -> None:
    """Every long-running process sets the cyclic collector's thresholds from the one setting
    (`GEOFLUX_STREAM_GC_THRESHOLD`: why, in its comment)."""
    from geoflux.settings import StreamSettings

    StreamSettings().apply_gc_threshold()


@main.group(help="Stream workers.")
def worker() -> None:
    _collector_thresholds()


METRICS_PORT = click.option("--metrics-port", default=0, show_default=True,
                            help="Serve Prometheus metrics on 127.0.0.1:PORT (0: off).")


@worker.command("evaluator", help="Run a geofence evaluator (transactional; stable --instance per process).")
@click.option("--instance", default="0", show_default=True, help="Stable id: the transactional id suffix.")
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_evaluator(instance: str, metrics_port: int) -> None:
    from services.logging import configure_logging
    from services.metrics import (
        PrometheusEvaluatorSensor,
        PrometheusStageSensor,
        serve_metrics,
    )
    from streams.evaluator import run_evaluator

    configure_logging()
    serve_metrics(metrics_port)
    run_evaluator(KafkaSettings(), GeofenceSettings(), codec(), instance, PrometheusEvaluatorSensor(),
                  PrometheusStageSensor())


@worker.command("metrics", help="Export consumer lag per group and partition, job wait/run times, "
                                "alert counts and DLQ depth for Prometheus.")
@METRICS_PORT
@click.option("--interval", default=15.0, show_default=True, help="Seconds between lag collections.")
@one_line_errors
@checks_credentials
def worker_metrics(metrics_port: int, interval: float) -> None:
    import signal
    import threading

    from services.logging import configure_logging
    from services.metrics import serve_metrics
    from services.metrics_exporter import MetricsExporter

    configure_logging()
    serve_metrics(metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exporter = MetricsExporter(KafkaSettings(), codec(), interval).start()
    try:
        exporter.run(stop)
    finally:
        exporter.close()


def _alert_sensor(port: int):
    from services.metrics import PrometheusAlertSensor, serve_metrics

    serve_metrics(port)
    return PrometheusAlertSensor()


def _stage_sensor():
    from services.metrics import PrometheusStageSensor

    return PrometheusStageSensor()


@worker.command("alert-router", help="Match geofence events, CEP matches and job ends against alert rules.")
@click.option("--instance", default="0", show_default=True)
@one_line_errors
@checks_credentials
def worker_alert_router(instance: str) -> None:
    from services.logging import configure_logging
    from streams.alerting.router_stage import AlertRouterStage

    configure_logging()
    AlertRouterStage(KafkaSettings(), codec(), instance, sensor=_stage_sensor()).serve()


@worker.command("alert-gate", help="Noise control and persist-before-send (GEOFLUX_ALERT_*).")
@click.option("--instance", default="0", show_default=True)
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_alert_gate(instance: str, metrics_port: int) -> None:
    from geoflux.settings import AlertSettings
    from services.logging import configure_logging
    from streams.alerting.gate_stage import AlertGateStage

    configure_logging()
    AlertGateStage(KafkaSettings(), codec(), AlertSettings(), _alert_sensor(metrics_port),
                   instance, stage_sensor=_stage_sensor()).serve()


@worker.command("sla-monitor", help="Measure delivery SLA attainment; alert when it drops below target.")
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_sla_monitor(metrics_port: int) -> None:
    import signal
    import threading

    from geoflux.settings import AlertSettings
    from services.control.sla import run_monitor
    from services.logging import configure_logging
    from services.metrics import record_sla, serve_metrics

    configure_logging()
    serve_metrics(metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_monitor(KafkaSettings(), codec(), AlertSettings(), stop, on_rows=record_sla)


@worker.command("alert-status", help="Fold alerts, outcomes, acks and resolutions into alert statuses; "
                                     "fire escalation levels.")
@click.option("--instance", default="0", show_default=True)
@one_line_errors
@checks_credentials
def worker_alert_status(instance: str) -> None:
    from services.logging import configure_logging
    from streams.alerting.status_stage import AlertStatusStage

    configure_logging()
    AlertStatusStage(KafkaSettings(), codec(), instance, sensor=_stage_sensor()).serve()


@worker.command("delivery", help="Deliver alerts through their channels, with retries, breaker and DLQ.")
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_delivery(metrics_port: int) -> None:
    from geoflux.settings import AlertSettings
    from services.logging import configure_logging
    from streams.alerting.delivery import run_delivery

    configure_logging()
    run_delivery(KafkaSettings(), codec(), AlertSettings(), _alert_sensor(metrics_port), _stage_sensor())


@main.command("api", help="Serve the HTTP API (GEOFLUX_API_HOST/PORT).")
@one_line_errors
@checks_credentials
def api() -> None:
    from services.api.app import serve
    from services.logging import configure_logging

    _collector_thresholds()
    configure_logging()
    serve(KafkaSettings(), GeofenceSettings(), ApiSettings(), codec())


@worker.command("cep", help="Complex event processing: --mode rekey | entity | geofence (run all three).")
@click.option("--mode", type=click.Choice(["rekey", "entity", "geofence"]), required=True)
@click.option("--instance", default="0", show_default=True)
@one_line_errors
@checks_credentials
def worker_cep(mode: str, instance: str) -> None:
    from services.logging import configure_logging
    from streams.cep.stage import CepStage, CepRekeyStage

    configure_logging()
    stage = (CepRekeyStage(KafkaSettings(), codec(), instance, sensor=_stage_sensor()) if mode == "rekey"
             else CepStage(KafkaSettings(), codec(), mode, instance, sensor=_stage_sensor()))
    stage.serve()


@worker.command("jobs", help="Run geoprocessing jobs (in-process tier; PostGIS tier with GEOFLUX_PG_DSN).")
@click.option("--no-postgis", is_flag=True, help="Run without the PostGIS tier.")
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_jobs(no_postgis: bool, metrics_port: int) -> None:
    from geoflux.settings import JobSettings, PostgresSettings
    from services.logging import configure_logging
    from services.metrics import PrometheusStageSensor, serve_metrics
    from streams.jobs.worker import run_jobs

    configure_logging()
    serve_metrics(metrics_port)
    run_jobs(KafkaSettings(), codec(), JobSettings(), None if no_postgis else PostgresSettings().dsn,
             PrometheusStageSensor())


@worker.command("job-alerts", help="Jobs raise alerts: failed, timed out, retries exhausted, queued "
                                   "past their SLA (GEOFLUX_JOB_ALERTS_*).")
@click.option("--instance", default="0", show_default=True)
@one_line_errors
@checks_credentials
def worker_job_alerts(instance: str) -> None:
    from geoflux.settings import JobAlertSettings
    from services.logging import configure_logging
    from streams.jobs.alerts import JobAlertStage

    configure_logging()
    JobAlertStage(KafkaSettings(), codec(), JobAlertSettings(), instance, sensor=_stage_sensor()).serve()


@worker.command("audit", help="Write events, CEP matches and status changes to the PostgreSQL "
                              "audit table (GEOFLUX_AUDIT_*, GEOFLUX_PG_DSN).")
@one_line_errors
@checks_credentials
def worker_audit() -> None:
    from geoflux.settings import AuditSettings, PostgresSettings
    from services.logging import configure_logging
    from streams.audit_sink import run_audit

    configure_logging()
    run_audit(KafkaSettings(), AuditSettings(), PostgresSettings().dsn, codec())
