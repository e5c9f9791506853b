"""What an operator does from a shell: geofence import, jobs, alerts, DLQ, replay, the audit
trail's retention, and one AWS Batch attempt (`batch-run`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from geoflux.settings import GeofenceSettings, KafkaSettings
from services.cli.base import codec, main, one_line_errors


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
    from services.control.geofence_registry import GeofenceRegistry

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


@main.command("batch-run", help="Run one attempt of a job inside an AWS Batch container: inputs and "
                                "outputs in S3 (GEOFLUX_BATCH_*); exit 0 done, 75 retry, 2 failed.")
@click.option("--job-id", required=True)
@click.option("--attempt", type=int, default=1, show_default=True)
@click.option("--bucket", default=None, help="default GEOFLUX_BATCH_BUCKET")
@click.option("--prefix", default=None, help="default GEOFLUX_BATCH_PREFIX")
def batch_run(job_id: str, attempt: int, bucket: str | None, prefix: str | None) -> None:
    from services.cli.batch_run import main as run

    run(job_id, attempt, bucket, prefix)


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
    from services.control.jobs import JobsService

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
    from services.api.routes_alerts import AlertStatusView
    from services.control.alert_lifecycle import record_action

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
    from services.control.alert_config import AlertConfig

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
    from services.control.dlq import DLQ_VALUE_SCHEMAS, DlqView, fresh_delivery

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
