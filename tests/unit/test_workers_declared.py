"""The worker registry (services/workers.py) is the one declaration: the CLI has each worker,
and the Compose file and the Kubernetes manifests run each one as declared, and nothing else."""

import shlex
from pathlib import Path

import pytest
import yaml

from services.cli import worker as worker_group
from services.workers import WORKERS

ROOT = Path(__file__).resolve().parents[2]


def normalised(argv: list[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the words before the first option, {option: value}): option order does not matter."""
    words = [a for a in argv]
    first = next((i for i, a in enumerate(words) if a.startswith("--")), len(words))
    opts = dict(zip(words[first::2], words[first + 1::2]))
    if "--mode" in opts:  # part of the worker's identity, not an option to compare apart
        return (*words[:first], "--mode", opts.pop("--mode")), opts
    return tuple(words[:first]), opts


def compose_services() -> dict:
    doc = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
    return {name: svc for name, svc in doc["services"].items()
            if isinstance(svc.get("command"), list) and svc["command"][:1] == ["worker"]}


def k8s_workloads() -> dict:
    out = {}
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "workers.yaml").read_text()):
        if doc and doc["kind"] in ("Deployment", "StatefulSet"):
            [container] = doc["spec"]["template"]["spec"]["containers"]
            if "args" in container:
                argv = container["args"]
            else:  # ["sh", "-c", "exec geoflux worker ... --instance ${HOSTNAME##*-}"]
                argv = shlex.split(container["command"][2].removeprefix("exec geoflux "))
            out[doc["metadata"]["name"].removeprefix("geoflux-")] = argv
    return out


@pytest.mark.parametrize("w", WORKERS, ids=lambda w: w.name)
def test_each_worker_is_a_cli_command_with_the_options_it_is_declared_with(w):
    command = worker_group.commands[w.argv[1]]
    params = {p.name for p in command.params}
    assert ("instance" in params) == w.instanced
    if w.metrics_port:
        assert "metrics_port" in params


def test_compose_runs_every_worker_as_declared_and_nothing_else():
    services = compose_services()
    assert set(services) == {w.name for w in WORKERS}
    for w in WORKERS:
        assert normalised(services[w.name]["command"]) == normalised(w.command(instance="0", metrics=True)), w.name


def test_kubernetes_runs_every_worker_as_declared_and_nothing_else():
    workloads = k8s_workloads()
    assert set(workloads) == {w.name for w in WORKERS}
    for w in WORKERS:
        assert normalised(workloads[w.name]) == normalised(w.command(instance="${HOSTNAME##*-}", metrics=True)), w.name


def offline_stage(name: str):
    """The stage a worker runs, built against a broker that is not there: building one opens no
    connection, so what it subscribes to and writes can be read off it."""
    from geoflux.settings import (AlertSettings, AuditSettings, GeofenceSettings, JobAlertSettings,
                                  JobSettings, KafkaSettings)
    from schemas.codec import AvroCodec
    from streams.alerting.delivery import DeliveryStage
    from streams.alerting.gate_stage import AlertGateStage
    from streams.alerting.router_stage import AlertRouterStage
    from streams.alerting.status_stage import AlertStatusStage
    from streams.audit_sink import AuditSinkStage
    from streams.cep.stage import CepRekeyStage, CepStage
    from streams.evaluator import EvaluatorStage
    from streams.jobs.alerts import JobAlertStage
    from services.control.sla import SlaView
    from streams.jobs.worker import JobStage

    k, c = KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix=""), AvroCodec()
    return {
        "evaluator": lambda: EvaluatorStage(k, GeofenceSettings(), c),
        "alert-router": lambda: AlertRouterStage(k, c, "0"),
        "alert-gate": lambda: AlertGateStage(k, c, AlertSettings()),
        "alert-status": lambda: AlertStatusStage(k, c, "0"),
        "delivery": lambda: DeliveryStage(k, c, AlertSettings()),
        "job-alerts": lambda: JobAlertStage(k, c, JobAlertSettings(), "0"),
        "cep-rekey": lambda: CepRekeyStage(k, c, "0"),
        "cep-entity": lambda: CepStage(k, c, "entity", "0"),
        "cep-geofence": lambda: CepStage(k, c, "geofence", "0"),
        "jobs": lambda: JobStage(k, c, JobSettings(), {}),
        "sla-monitor": lambda: SlaView(k, c, AlertSettings()),
        "audit": lambda: AuditSinkStage(k, AuditSettings(), "postgresql://127.0.0.1:9/none", c,
                                        store=object()),
    }.get(name, lambda: None)()


# side inputs whose reader a stage opens only later, so an offline one does not hold it yet
LATE_READERS = {"jobs": {"jobs.status": "the status view opens its reader when the stage starts",
                         "jobs.batch": "read only when the AWS Batch tier is configured"}}


def readers_of(stage) -> list[str]:
    """The topics a stage reads whole: every TopicReader it holds, alone or in a list."""
    from connectors.topic_reader import TopicReader

    found = []
    for value in vars(stage).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, TopicReader):
                found.append(item.topic)
    return found


@pytest.mark.parametrize("w", WORKERS, ids=lambda w: w.name)
def test_each_worker_declares_the_topics_its_stage_really_reads_and_writes(w):
    from schemas.catalogue import catalogue

    assert set(w.inputs + w.side_inputs + w.outputs) <= set(catalogue()), "catalogue topics only"
    stage = offline_stage(w.name)
    if stage is None:
        assert not w.inputs, f"{w.name}: inputs declared but no stage to check them against"
        return
    consumed = (getattr(stage, "inputs", None) or getattr(stage, "topics", None)
                or list(getattr(stage, "sources", ())))
    assert sorted(consumed) == sorted(w.inputs)
    assert set(readers_of(stage)) | set(LATE_READERS.get(w.name, ())) == set(w.side_inputs)
    for attr in ("dlq_topic", "changelog_topic"):
        written = getattr(stage, attr, None)
        if written:
            assert written in w.outputs, f"{w.name} writes {written} ({attr})"


def test_kubernetes_runs_each_worker_with_its_declared_replicas():
    replicas = {}
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "workers.yaml").read_text()):
        if doc and doc["kind"] in ("Deployment", "StatefulSet"):
            replicas[doc["metadata"]["name"].removeprefix("geoflux-")] = doc["spec"]["replicas"]
    assert replicas == {w.name: w.replicas for w in WORKERS}


# the row of docs/ARCHITECTURE.md's topic table that describes each worker
DOC_ROWS = {"evaluator": "| evaluator (", "alert-router": "| alert router (", "alert-gate": "| alert gate (",
            "alert-status": "| alert status (", "delivery": "| delivery (", "sla-monitor": "| SLA monitor (",
            "job-alerts": "| job alerts (", "cep-rekey": "| CEP re-key (", "cep-entity": "| CEP entity / geofence (",
            "cep-geofence": "| CEP entity / geofence (", "jobs": "| jobs (", "audit": "| audit sink ("}


@pytest.mark.parametrize("w", [w for w in WORKERS if w.name in DOC_ROWS], ids=lambda w: w.name)
def test_the_architecture_topic_table_names_what_the_registry_declares(w):
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    [row] = [line for line in doc.splitlines() if line.startswith(DOC_ROWS[w.name])]
    missing = [t for t in w.inputs + w.side_inputs + w.outputs if f"`{t}`" not in row]
    assert not missing, f"{w.name}: the table's row does not name {missing}"
