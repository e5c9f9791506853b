"""The `geoflux` command. Every setting comes from `GEOFLUX_*` variables (see geoflux/settings.py);
every failure exits non-zero with a one-line reason."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from geoflux.errors import GeofluxError
from geoflux.settings import (ApiSettings, GeofenceSettings, KafkaSettings, LocalKafkaSettings,
                              RegistrySettings)


def one_line_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GeofluxError as exc:
            raise click.ClickException(str(exc).splitlines()[0]) from None
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        except Exception as exc:  # librdkafka and friends: still one line, never a traceback
            if type(exc).__name__ == "KafkaException":
                raise click.ClickException(f"Kafka: {exc.args[0].str()}") from None
            raise
    return wrapper


def checks_credentials(fn):
    """Before a long-running command starts its clients: credentials or certificates the
    cluster refuses end it with that reason (exit 1), instead of a transactional producer
    waiting for its coordinator for ever. An unreachable cluster is waited for as before."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from connectors.kafka_admin import check_credentials

        check_credentials(KafkaSettings())
        return fn(*args, **kwargs)
    return wrapper


def codec():
    from schemas.codec import codec_from_settings

    return codec_from_settings(RegistrySettings())


@click.group(help="geoflux: geofence events, CEP, jobs and alerts on Apache Kafka.")
def main() -> None:
    pass


# -- the local broker -------------------------------------------------------------------------
@main.group(help="The local single-node Kafka broker (GEOFLUX_LOCAL_KAFKA_*).")
def kafka() -> None:
    pass


@kafka.command("start", help="Fetch (first time), format and start the broker; print its bootstrap address.")
@one_line_errors
def kafka_start() -> None:
    from services.local_kafka import LocalKafka

    click.echo(LocalKafka().start())


@kafka.command("stop", help="Stop the broker (SIGTERM, then SIGKILL after the timeout).")
@one_line_errors
def kafka_stop() -> None:
    from services.local_kafka import LocalKafka

    click.echo("stopped" if LocalKafka().stop() else "not running")


@kafka.command("status", help="Is the broker running and ready? Exit 1 if not.")
@one_line_errors
def kafka_status() -> None:
    from services.local_kafka import LocalKafka

    status = LocalKafka().status()
    click.echo(str(status))
    if not status.ready:
        sys.exit(1)


# -- topics -----------------------------------------------------------------------------------
@main.group(help="The topic catalogue (GEOFLUX_KAFKA_*).")
def topics() -> None:
    pass


@topics.command("apply", help="Create or fix every catalogue topic; idempotent.")
@one_line_errors
def topics_apply() -> None:
    from connectors.kafka_admin import apply

    changes = apply(KafkaSettings())
    click.echo("\n".join(changes) if changes else "no changes")


@topics.command("describe", help="Show catalogue topics and any drift from the cluster; exit 1 on drift.")
@one_line_errors
def topics_describe() -> None:
    from connectors.kafka_admin import describe
    from schemas.catalogue import catalogue

    s = KafkaSettings()
    for spec in catalogue(s).values():
        policy = "compact" if spec.compacted else "delete"
        click.echo(f"{spec.name:40} {policy:8} {spec.value_schema or '-':18} {spec.doc}")
    drift = describe(s)
    for d in drift:
        click.echo(f"DRIFT {d}")
    if drift:
        sys.exit(1)


# -- workers and services ---------------------------------------------------------------------
@main.group(help="Stream workers.")
def worker() -> None:
    pass


METRICS_PORT = click.option("--metrics-port", default=0, show_default=True,
                            help="Serve Prometheus metrics on 127.0.0.1:PORT (0: off).")


@worker.command("evaluator", help="Run a geofence evaluator (transactional; stable --instance per process).")
@click.option("--instance", default="0", show_default=True, help="Stable id: the transactional id suffix.")
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_evaluator(instance: str, metrics_port: int) -> None:
    from services.logging import configure_logging
    from services.metrics import PrometheusEvaluatorSensor, PrometheusStageSensor, serve_metrics
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


def _run_stage(stage) -> None:
    import signal

    signal.signal(signal.SIGTERM, stage.stop)
    signal.signal(signal.SIGINT, stage.stop)
    stage.run()


@worker.command("alert-router", help="Match geofence events, CEP matches and job ends against alert rules.")
@click.option("--instance", default="0", show_default=True)
@one_line_errors
@checks_credentials
def worker_alert_router(instance: str) -> None:
    from services.logging import configure_logging
    from streams.alerting.stages import AlertRouter

    configure_logging()
    _run_stage(AlertRouter(KafkaSettings(), codec(), instance, sensor=_stage_sensor()))


@worker.command("alert-gate", help="Noise control and persist-before-send (GEOFLUX_ALERT_*).")
@click.option("--instance", default="0", show_default=True)
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_alert_gate(instance: str, metrics_port: int) -> None:
    from geoflux.settings import AlertSettings
    from services.logging import configure_logging
    from streams.alerting.stages import AlertGate

    configure_logging()
    _run_stage(AlertGate(KafkaSettings(), codec(), AlertSettings(), _alert_sensor(metrics_port),
                         instance, stage_sensor=_stage_sensor()))


@worker.command("sla-monitor", help="Measure delivery SLA attainment; alert when it drops below target.")
@METRICS_PORT
@one_line_errors
@checks_credentials
def worker_sla_monitor(metrics_port: int) -> None:
    import signal
    import threading

    from geoflux.settings import AlertSettings
    from services.logging import configure_logging
    from services.metrics import record_sla, serve_metrics
    from services.sla import run_monitor

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
    from streams.alerting.stages import AlertStatusStage

    configure_logging()
    _run_stage(AlertStatusStage(KafkaSettings(), codec(), instance, sensor=_stage_sensor()))


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
    from services.api import serve
    from services.logging import configure_logging

    configure_logging()
    serve(KafkaSettings(), GeofenceSettings(), ApiSettings(), codec())


@main.group(help="Geofences.")
def geofences() -> None:
    pass


@geofences.command("import", help="Load a GeoJSON FeatureCollection into the geofence registry: "
                   "every feature it can; each one refused is reported with the reason, and the "
                   "exit code is 1 if any was. Importing the same file again updates its fences.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", default=None,
              help="Tenant of features that carry no tenant_id; features of another are refused.")
@click.option("--id-property", default=None, metavar="NAME",
              help="Fence ids from this property (e.g. ADM0_A3, adm1_code). Default: the "
                   "feature's id, else its name.")
@click.option("--name-property", default=None, metavar="NAME",
              help="Fence names from this property (Natural Earth: NAME). Default: name.")
@one_line_errors
def geofences_import(file: Path, tenant: str | None, id_property: str | None,
                     name_property: str | None) -> None:
    from services.geofence_registry import GeofenceRegistry

    try:
        collection = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file} is not JSON: {exc}") from None
    registry = GeofenceRegistry(KafkaSettings(), GeofenceSettings(), codec())
    registry.start()
    try:
        report = registry.import_collection(collection, tenant, id_property=id_property,
                                            name_property=name_property)
    finally:
        registry.close()
    for _, label, reason in report.refused:
        click.echo(f"rejected {label}: {reason}", err=True)
    click.echo(f"imported {report.imported} geofence(s), rejected {len(report.refused)}")
    if report.refused:
        sys.exit(1)


@worker.command("cep", help="Complex event processing: --mode rekey | entity | geofence (run all three).")
@click.option("--mode", type=click.Choice(["rekey", "entity", "geofence"]), required=True)
@click.option("--instance", default="0", show_default=True)
@one_line_errors
@checks_credentials
def worker_cep(mode: str, instance: str) -> None:
    from services.logging import configure_logging
    from streams.cep.stage import CepProcessor, CepRekey

    configure_logging()
    stage = (CepRekey(KafkaSettings(), codec(), instance, sensor=_stage_sensor()) if mode == "rekey"
             else CepProcessor(KafkaSettings(), codec(), mode, instance, sensor=_stage_sensor()))
    _run_stage(stage)


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
    _run_stage(JobAlertStage(KafkaSettings(), codec(), JobAlertSettings(), instance,
                             sensor=_stage_sensor()))


@main.command("batch-run", help="Run one attempt of a job inside an AWS Batch container: inputs and "
                                "outputs in S3 (GEOFLUX_BATCH_*); exit 0 done, 75 retry, 2 failed.")
@click.option("--job-id", required=True)
@click.option("--attempt", type=int, default=1, show_default=True)
@click.option("--bucket", default=None, help="default GEOFLUX_BATCH_BUCKET")
@click.option("--prefix", default=None, help="default GEOFLUX_BATCH_PREFIX")
def batch_run(job_id: str, attempt: int, bucket: str | None, prefix: str | None) -> None:
    from streams.jobs.batch_run import main as run

    run(job_id, attempt, bucket, prefix)


@worker.command("audit", help="Write events, CEP matches and status changes to the PostgreSQL "
                              "audit table (GEOFLUX_AUDIT_*, GEOFLUX_PG_DSN).")
@one_line_errors
@checks_credentials
def worker_audit() -> None:
    from connectors.audit_sink import run_audit
    from geoflux.settings import AuditSettings, PostgresSettings
    from services.logging import configure_logging

    configure_logging()
    run_audit(KafkaSettings(), AuditSettings(), PostgresSettings().dsn, codec())


@main.group(help="The PostgreSQL audit trail (GEOFLUX_AUDIT_*, GEOFLUX_PG_DSN).")
def audit() -> None:
    pass


@audit.command("drop-before", help="Drop whole daily partitions before DATE (YYYY-MM-DD, UTC) or "
                                   "older than --older-than-days (default GEOFLUX_AUDIT_RETENTION_DAYS).")
@click.argument("day", required=False, type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--older-than-days", type=click.IntRange(min=0), default=None)
@one_line_errors
def audit_drop_before(day, older_than_days: int | None) -> None:
    from datetime import datetime, timedelta, timezone

    from connectors.audit_store import AuditStore
    from geoflux.settings import AuditSettings, PostgresSettings

    if day is not None and older_than_days is not None:
        raise click.UsageError("give DATE or --older-than-days, not both")
    s = AuditSettings()
    if day is not None:
        cutoff = day.date()
    else:
        days = s.retention_days if older_than_days is None else older_than_days
        cutoff = datetime.now(timezone.utc).date() - timedelta(days=days)
    dropped = AuditStore(PostgresSettings().dsn, s.table, s.connect_timeout_s).drop_before(cutoff)
    for name in dropped:
        click.echo(f"dropped {name}")
    click.echo(f"dropped {len(dropped)} partition(s) before {cutoff.isoformat()}")


@main.group(help="Geoprocessing jobs.")
def jobs() -> None:
    pass


def _jobs_service():
    from geoflux.settings import JobSettings
    from services.jobs import JobsService

    return JobsService(KafkaSettings(), codec(), JobSettings()).start()


@jobs.command("submit", help="Submit a job; INPUTS is JSON or @FILE. Prints the job id.")
@click.argument("process_id")
@click.argument("inputs")
@click.option("--priority", default=5, show_default=True)
@click.option("--wait", "wait_s", default=0.0, help="Wait up to this many seconds and print the result.")
@one_line_errors
def jobs_submit(process_id: str, inputs: str, priority: int, wait_s: float) -> None:
    import asyncio

    text = Path(inputs[1:]).read_text() if inputs.startswith("@") else inputs
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"inputs are not JSON: {exc}") from None
    svc = _jobs_service()
    try:
        st, created = svc.submit(process_id, parsed, priority=priority)
        click.echo(f"{st['job_id']} {'created' if created else 'existing'} {st['status']}")
        if wait_s:
            done = asyncio.run(svc.wait(st["job_id"], wait_s))
            click.echo(json.dumps(svc.result(st["job_id"]) if done["status"] == "successful"
                                  else {"status": done["status"], "message": done["message"]}))
    finally:
        svc.close()


@jobs.command("status", help="A job's status as JSON.")
@click.argument("job_id")
@one_line_errors
def jobs_status(job_id: str) -> None:
    svc = _jobs_service()
    try:
        click.echo(json.dumps(svc.get(job_id)))
    finally:
        svc.close()


@jobs.command("results", help="A finished job's outputs as JSON (exit 1 if not ready).")
@click.argument("job_id")
@one_line_errors
def jobs_results(job_id: str) -> None:
    svc = _jobs_service()
    try:
        st, out = svc.get(job_id), svc.result(job_id)
    finally:
        svc.close()
    if out is None:
        raise click.ClickException(f"job {job_id} is {st['status']}: no results")
    click.echo(json.dumps(out))


@jobs.command("cancel", help="Dismiss a job; a running job is stopped.")
@click.argument("job_id")
@one_line_errors
def jobs_cancel(job_id: str) -> None:
    svc = _jobs_service()
    try:
        click.echo(svc.dismiss(job_id)["status"])
    finally:
        svc.close()


@main.group(help="Alert configuration.")
def alerts() -> None:
    pass


def _lifecycle(action: str, alert_id: str, note: str | None, by: str) -> None:
    from connectors.kafka_producer import ReliableProducer
    from services.alert_lifecycle import record_action
    from services.routes_alerts import AlertStatusView

    kafka = KafkaSettings()
    statuses = AlertStatusView(kafka, codec()).start()
    try:
        status = statuses.get(alert_id)
    finally:
        statuses.close()
    rec = record_action(kafka, codec(), ReliableProducer(kafka), alert_id=alert_id,
                        tenant_id=status["tenant_id"], action=action, by=by, origin="cli", note=note)
    click.echo(f"{action.lower()} recorded for {alert_id} (was {status['status']}; action {rec['action_id']})")


BY = click.option("--by", default=lambda: f"cli:{os.environ.get('USER', 'unknown')}", show_default="cli:$USER")


@alerts.command("ack", help="Acknowledge an alert: its escalation stops.")
@click.argument("alert_id")
@click.option("--note")
@BY
@one_line_errors
def alerts_ack(alert_id: str, note: str | None, by: str) -> None:
    _lifecycle("ACK", alert_id, note, by)


@alerts.command("resolve", help="Resolve an alert: escalation stops and its channels are told.")
@click.argument("alert_id")
@click.option("--note")
@BY
@one_line_errors
def alerts_resolve(alert_id: str, note: str | None, by: str) -> None:
    _lifecycle("RESOLVE", alert_id, note, by)


@alerts.command("load", help="Load channels, rules, silences and escalation policies from a JSON file "
                             "(all validated first).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@one_line_errors
def alerts_load(file: Path) -> None:
    from services.alert_config import AlertConfig

    config = AlertConfig(KafkaSettings(), codec()).start()
    try:
        counts = config.load_file(file)
    finally:
        config.close()
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))


@main.group(help="Dead-letter queues: alerts, jobs, locations, cep, audit.")
def dlq() -> None:
    pass


def _dlq_view(queue: str):
    from services.dlq import DLQ_VALUE_SCHEMAS, DlqView, fresh_delivery

    return DlqView(KafkaSettings(), codec(), queue, DLQ_VALUE_SCHEMAS[queue],
                   rewrite=fresh_delivery if queue == "alerts" else None).start()


QUEUE = click.option("--queue", type=click.Choice(["alerts", "jobs", "locations", "cep", "audit"]),
                     default="alerts", show_default=True)


@dlq.command("list", help="Open DLQ records, newest first.")
@QUEUE
@click.option("--all", "include_closed", is_flag=True, help="Include redriven and resolved records.")
@one_line_errors
def dlq_list(queue: str, include_closed: bool) -> None:
    view = _dlq_view(queue)
    try:
        items = view.list(include_closed)
    finally:
        view.close()
    for item in items:
        click.echo(f"{item['dlq_id']}  {item['error_class']:<12} attempts={item['attempts']}  "
                   f"{item['error_message'][:80]}")
    click.echo(f"{len(items)} record(s)")


@dlq.command("show", help="One DLQ record with its original payload, as JSON.")
@QUEUE
@click.argument("dlq_id")
@one_line_errors
def dlq_show(queue: str, dlq_id: str) -> None:
    view = _dlq_view(queue)
    try:
        click.echo(json.dumps(view.get(dlq_id), indent=2, default=str))
    finally:
        view.close()


@dlq.command("redrive", help="Write a DLQ record's original back where it came from.")
@QUEUE
@click.argument("dlq_id")
@one_line_errors
def dlq_redrive(queue: str, dlq_id: str) -> None:
    import getpass

    view = _dlq_view(queue)
    try:
        result = view.redrive(dlq_id, by=f"cli:{getpass.getuser()}")
    finally:
        view.close()
    click.echo(f"redriven {result['dlq_id']} -> {result['redriven_to']}")


@main.command("demo", help="Publish simulated vehicles moving through sample geofences, with the demo "
                           "tenant's alert rules, inbox, silence, CEP patterns, a sample job a minute "
                           "and a vehicle with a broken GPS.")
@click.option("--vehicles", default=20, show_default=True)
@click.option("--interval", default=1.0, show_default=True, help="Seconds between position reports.")
@click.option("--duration", default=0.0, show_default=True, help="Seconds to run; 0 runs until stopped.")
@click.option("--feed-only", is_flag=True, help="Only the vehicles and their geofences: no rules, "
              "channel, silence, patterns, jobs or broken GPS.")
@one_line_errors
def demo(vehicles: int, interval: float, duration: float, feed_only: bool) -> None:
    from services.demo import run_demo

    run_demo(KafkaSettings(), GeofenceSettings(), codec(), vehicles, interval, duration,
             feed_only=feed_only)


@main.command("up", help="Start the local stack: broker, PostgreSQL + PostGIS, schema registry, "
                         "topics, every worker, the API, the demo feed; restart what exits. "
                         "Ctrl-C stops it.")
@click.option("--demo/--no-demo", default=True, show_default=True)
@click.option("--no-postgres", is_flag=True,
              help="No PostgreSQL (no audit trail, PostGIS tier or inbox); GEOFLUX_PG_DSN uses an existing one.")
@click.option("--no-registry", is_flag=True,
              help="Registry-less schema ids; GEOFLUX_SCHEMA_REGISTRY_URL uses an existing registry.")
@one_line_errors
def up(demo: bool, no_postgres: bool, no_registry: bool) -> None:
    from services.stack import Stack

    Stack(KafkaSettings(), LocalKafkaSettings(), ApiSettings()).up(
        with_demo=demo, with_postgres=not no_postgres, with_registry=not no_registry)


@main.command("status", help="Each part of the running `geoflux up`: state (running, restarting, "
                             "given-up, down), pid, restarts, last error. Exit 1 if none runs.")
@one_line_errors
def status() -> None:
    from services.stack import Stack

    running, lines = Stack(KafkaSettings(), LocalKafkaSettings(), ApiSettings()).status()
    click.echo("\n".join(lines))
    if not running:
        sys.exit(1)


@main.command("replay", help="Reset a stopped consumer group's offsets so its stage reprocesses "
              "(stateless stages; see docs/ARCHITECTURE.md). Prints partition: old -> new.")
@click.option("--group", required=True, help="Consumer group (GEOFLUX_KAFKA_TOPIC_PREFIX is added if missing).")
@click.option("--topic", "topics", multiple=True, help="Logical topic name; default: every topic the group committed.")
@click.option("--to-datetime", default=None, help="ISO 8601 or epoch ms: the first record produced at or after it.")
@click.option("--to-offset", "to_offsets", multiple=True, help="PARTITION:OFFSET (one --topic) or TOPIC:PARTITION:OFFSET.")
@click.option("--to-earliest", is_flag=True)
@click.option("--to-latest", is_flag=True)
@click.option("--dry-run", is_flag=True, help="Print the changes, make none.")
@one_line_errors
def replay(group: str, topics: tuple[str, ...], to_datetime: str | None, to_offsets: tuple[str, ...],
           to_earliest: bool, to_latest: bool, dry_run: bool) -> None:
    from connectors.offsets import group_name, reset_group, reset_target

    s = KafkaSettings()
    target = reset_target(s, list(topics), to_datetime=to_datetime, to_offsets=list(to_offsets),
                          to_earliest=to_earliest, to_latest=to_latest)
    physical = group_name(s, group)
    changes = reset_group(s, physical, list(topics), target, dry_run=dry_run)
    click.echo(f"group {physical}{' (dry run, nothing changed)' if dry_run else ''}:")
    for change in changes:
        click.echo(f"  {change}")


@main.command("down", help="Stop everything `geoflux up` started.")
@one_line_errors
def down() -> None:
    from services.stack import Stack

    click.echo(Stack(KafkaSettings(), LocalKafkaSettings(), ApiSettings()).down())


if __name__ == "__main__":
    main()
