"""Applies the topic catalogue through the AdminClient and reports drift against the cluster."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

from connectors.kafka_config import admin_config
from geoflux.errors import ConfigurationError, TransientError
from geoflux.settings import KafkaSettings
from schemas.catalogue import TopicSpec, catalogue


@dataclass(frozen=True, slots=True)
class Drift:
    topic: str
    what: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.what} expected {self.expected}, cluster has {self.actual}"


def admin_client(settings: KafkaSettings) -> AdminClient:
    # errors reach the caller as exceptions with the reason; librdkafka's own log lines would
    # only repeat them around a command's one-line error
    return AdminClient(admin_config(settings, log_level=0))


def wait_for_cluster(admin: AdminClient, settings: KafkaSettings) -> None:
    """Returns once a broker answers; refused credentials or certificates raise
    `KafkaAuthenticationError` within a second or so. librdkafka retries those silently and
    reports them only to the error callback, which runs in poll(): so ask in short slices."""
    deadline = time.monotonic() + settings.request_timeout_s
    while True:
        admin.poll(0)  # serves the error callback (raises on an authentication failure)
        try:
            md = admin.list_topics(timeout=min(0.5, settings.request_timeout_s))
            break
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                admin.poll(0)
                raise TransientError(
                    f"no Kafka broker answered at {settings.bootstrap} within "
                    f"{settings.request_timeout_s:.0f}s; start one with `geoflux kafka start` or set "
                    f"GEOFLUX_KAFKA_BOOTSTRAP") from exc
    if not md.brokers:
        raise TransientError(f"Kafka at {settings.bootstrap} reports no brokers")


def check_credentials(settings: KafkaSettings) -> bool:
    """A worker's first step: raises `KafkaAuthenticationError` when the cluster refuses our
    settings (before a transactional producer would wait for its coordinator for ever); True
    when a broker answered, False when none did yet (the worker then waits as it always does)."""
    try:
        wait_for_cluster(admin_client(settings), settings)
        return True
    except TransientError:
        return False


def _result(futures: dict, ignore: tuple[str, ...] = ()) -> None:
    for name, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            err = exc.args[0]
            if err.name() in ignore:
                continue
            raise ConfigurationError(f"{name}: {err.str()}") from exc


def _describe_configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]
    futures = admin.describe_configs(resources)
    return {res.name: {k: v.value for k, v in fut.result().items()} for res, fut in futures.items()}


def describe(settings: KafkaSettings, specs: dict[str, TopicSpec] | None = None) -> list[Drift]:
    """Every difference between the catalogue and the cluster; empty when they agree."""
    specs = specs or catalogue(settings)
    admin = admin_client(settings)
    wait_for_cluster(admin, settings)
    md = admin.list_topics(timeout=settings.request_timeout_s)
    drifts: list[Drift] = []
    present = [s.name for s in specs.values() if s.name in md.topics]
    configs = _describe_configs(admin, present)
    for spec in specs.values():
        if spec.name not in md.topics:
            drifts.append(Drift(spec.name, "existence", "present", "missing"))
            continue
        parts = md.topics[spec.name].partitions
        want_parts = spec.partitions or settings.partitions
        if len(parts) != want_parts:
            drifts.append(Drift(spec.name, "partitions", str(want_parts), str(len(parts))))
        rf = min((len(p.replicas) for p in parts.values()), default=0)
        if rf != settings.replication:
            drifts.append(Drift(spec.name, "replication", str(settings.replication), str(rf)))
        for key, want in spec.config(settings).items():
            have = configs[spec.name].get(key)
            if have != want:
                drifts.append(Drift(spec.name, key, want, str(have)))
    return drifts


def _wait_until_listed(admin, settings: KafkaSettings, names: set[str]) -> None:
    """A created topic reaches the broker's metadata a moment after CreateTopics answers; callers
    (and `describe` right after) must see it, so wait for it."""
    deadline = time.monotonic() + settings.request_timeout_s
    while True:
        md = admin.list_topics(timeout=settings.request_timeout_s)
        absent = [n for n in names if n not in md.topics or md.topics[n].error is not None]
        if not absent:
            return
        if time.monotonic() > deadline:
            raise TransientError(f"created topics not yet visible after {settings.request_timeout_s:g} s: "
                                 f"{', '.join(sorted(absent)[:5])}")
        time.sleep(0.1)  # metadata propagation


def apply(settings: KafkaSettings, specs: dict[str, TopicSpec] | None = None) -> list[str]:
    """Creates missing topics, grows partitions, sets configs. Idempotent: returns what changed."""
    specs = specs or catalogue(settings)
    admin = admin_client(settings)
    wait_for_cluster(admin, settings)
    changes: list[str] = []
    md = admin.list_topics(timeout=settings.request_timeout_s)
    missing = [s for s in specs.values() if s.name not in md.topics]
    if missing:
        _result(admin.create_topics(
            [NewTopic(s.name, num_partitions=s.partitions or settings.partitions,
                      replication_factor=settings.replication, config=s.config(settings))
             for s in missing], request_timeout=settings.request_timeout_s),
            ignore=("TOPIC_ALREADY_EXISTS",))
        changes += [f"created {s.name}" for s in missing]
        _wait_until_listed(admin, settings, {s.name for s in missing})
    for drift in describe(settings, specs):
        spec = next(s for s in specs.values() if s.name == drift.topic)
        if drift.what == "partitions" and int(drift.actual) < int(drift.expected):
            _result(admin.create_partitions([NewPartitions(spec.name, int(drift.expected))]))
            changes.append(f"{spec.name}: partitions {drift.actual} -> {drift.expected}")
        elif drift.what in ("partitions", "replication"):
            raise ConfigurationError(
                f"{drift}; Kafka cannot shrink partitions or change replication here: "
                "recreate the topic or fix GEOFLUX_KAFKA_PARTITIONS/REPLICATION")
        elif drift.what != "existence":
            res = ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=[
                ConfigEntry(drift.what, drift.expected,
                            incremental_operation=AlterConfigOpType.SET)])
            _result(admin.incremental_alter_configs([res]))
            changes.append(f"{spec.name}: {drift.what} {drift.actual} -> {drift.expected}")
    return changes
