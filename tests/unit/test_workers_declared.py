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
