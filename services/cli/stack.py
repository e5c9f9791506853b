"""`geoflux kafka`, `topics`, `up`, `status`, `down` and `demo`: the local stack and its broker."""

from __future__ import annotations

import sys

import click

from geoflux.settings import ApiSettings, GeofenceSettings, KafkaSettings, LocalKafkaSettings
from services.cli.base import codec, main, one_line_errors


# -- the local broker -------------------------------------------------------------------------
@main.group(help="The local single-node Kafka broker (GEOFLUX_LOCAL_KAFKA_*).")
def kafka() -> None:
    pass


@kafka.command("start", help="Fetch (first time), format and start the broker; print its bootstrap address.")
@one_line_errors
def kafka_start() -> None:
    from services.devstack.local_kafka import LocalKafka

    click.echo(LocalKafka().start())


@kafka.command("stop", help="Stop the broker (SIGTERM, then SIGKILL after the timeout).")
@one_line_errors
def kafka_stop() -> None:
    from services.devstack.local_kafka import LocalKafka

    click.echo("stopped" if LocalKafka().stop() else "not running")


@kafka.command("status", help="Is the broker running and ready? Exit 1 if not.")
@one_line_errors
def kafka_status() -> None:
    from services.devstack.local_kafka import LocalKafka

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
    from services.devstack.demo import run_demo

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
    from services.devstack.stack import Stack

    Stack(KafkaSettings(), LocalKafkaSettings(), ApiSettings()).up(
        with_demo=demo, with_postgres=not no_postgres, with_registry=not no_registry)


@main.command("status", help="Each part of the running `geoflux up`: state (running, restarting, "
                             "given-up, down), pid, restarts, last error. Exit 1 if none runs.")
@one_line_errors
def status() -> None:
    from services.devstack.stack import Stack

    running, lines = Stack(KafkaSettings(), LocalKafkaSettings(), ApiSettings()).status()
    click.echo("\n".join(lines))
    if not running:
        sys.exit(1)


@main.command("down", help="Stop everything `geoflux up` started.")
@one_line_errors
def down() -> None:
    from services.devstack.stack import Stack

    click.echo(Stack(KafkaSettings(), LocalKafkaSettings(), ApiSettings()).down())
