"""Every worker geoflux runs, declared once.

`geoflux up` starts its parts from this list; a test holds the Compose file
(`docker-compose.kafka.yml`) and the Kubernetes manifests (`deploy/k8s/workers.yaml`, command
and replicas) to it, checks that each worker is a command of the CLI, that the topics declared
here are the ones its stage subscribes to, reads whole and writes, and that
docs/ARCHITECTURE.md's topic table names them. Adding a worker: a `geoflux worker` command in
`services/cli/workers.py`, an entry here, then the Compose service and the K8s workload the test asks for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Worker:
    name: str  # the part in `up`, the Compose service, the K8s workload (geoflux-<name>)
    argv: tuple[str, ...]  # `geoflux` arguments, without --instance and --metrics-port
    guarantee: str  # transactional | at-least-once
    #: takes --instance (a transactional stage: one stable id per process)
    instanced: bool = False
    #: the port its Prometheus metrics are served on in Compose and K8s (None: not exported)
    metrics_port: int | None = None
    #: `up` runs it only when PostgreSQL is there
    needs_postgres: bool = False
    #: `geoflux up` runs it (the lag exporter is for deployments with Prometheus)
    in_stack: bool = True
    #: the catalogue topics whose records it consumes (what its consumer group subscribes to)
    inputs: tuple[str, ...] = ()
    #: compacted configuration or state it reads whole beside its inputs
    side_inputs: tuple[str, ...] = ()
    #: the catalogue topics it writes (DLQ and changelog included)
    outputs: tuple[str, ...] = ()
    #: instances in a deployment (the Kubernetes replicas); `up` runs one of each
    replicas: int = 1

    def command(self, instance: str | None = None, metrics: bool = False) -> list[str]:
        argv = list(self.argv)
        if self.instanced and instance is not None:
            argv += ["--instance", instance]
        if metrics and self.metrics_port:
            argv += ["--metrics-port", str(self.metrics_port)]
        return argv


WORKERS: tuple[Worker, ...] = (
    Worker("evaluator", ("worker", "evaluator"), "transactional", instanced=True, metrics_port=9101,
           inputs=("geo.locations", "geo.entities"), side_inputs=("geo.geofences",),
           outputs=("geo.geofence-events", "geo.evaluator-state", "geo.locations.dlq", "geo.evaluations"),
           replicas=3),
    Worker("alert-router", ("worker", "alert-router"), "transactional", instanced=True,
           inputs=("geo.geofence-events", "geo.cep-matches", "jobs.status"), side_inputs=("alerts.rules", "geo.cep-patterns"),
           outputs=("alerts.candidates", "alerts.dlq"), replicas=2),
    Worker("alert-gate", ("worker", "alert-gate"), "transactional", instanced=True, metrics_port=9102,
           inputs=("alerts.candidates",), side_inputs=("alerts.silences",),
           outputs=("alerts.alerts", "alerts.deliveries", "alerts.gate-state", "alerts.dlq"), replicas=2),
    Worker("alert-status", ("worker", "alert-status"), "transactional", instanced=True,
           inputs=("alerts.alerts", "alerts.outcomes", "alerts.lifecycle"), side_inputs=("alerts.escalations",),
           outputs=("alerts.status", "alerts.deliveries", "alerts.dlq"), replicas=2),
    Worker("delivery", ("worker", "delivery"), "at-least-once", metrics_port=9103,
           inputs=("alerts.deliveries", "alerts.retry", "alerts.dlq"), side_inputs=("alerts.channels",),
           outputs=("alerts.outcomes", "alerts.retry", "alerts.dlq", "alerts.deliveries"), replicas=2),
    Worker("sla-monitor", ("worker", "sla-monitor"), "at-least-once", metrics_port=9104,
           side_inputs=("alerts.alerts", "alerts.outcomes"), outputs=("alerts.candidates",)),
    Worker("job-alerts", ("worker", "job-alerts"), "transactional", instanced=True,
           inputs=("jobs.status", "jobs.dlq"), outputs=("alerts.candidates", "jobs.alert-state", "alerts.dlq")),
    Worker("cep-rekey", ("worker", "cep", "--mode", "rekey"), "transactional", instanced=True,
           inputs=("geo.geofence-events",), outputs=("geo.cep-input", "geo.cep.dlq"), replicas=2),
    Worker("cep-entity", ("worker", "cep", "--mode", "entity"), "transactional", instanced=True,
           inputs=("geo.cep-input", "geo.locations"), side_inputs=("geo.cep-patterns",),
           outputs=("geo.cep-matches", "geo.cep-aggregates", "geo.cep-state", "geo.cep.dlq"), replicas=2),
    Worker("cep-geofence", ("worker", "cep", "--mode", "geofence"), "transactional", instanced=True,
           inputs=("geo.geofence-events",), side_inputs=("geo.cep-patterns",),
           outputs=("geo.cep-matches", "geo.cep-aggregates", "geo.cep-geofence-state", "geo.cep.dlq"),
           replicas=2),
    Worker("jobs", ("worker", "jobs"), "at-least-once",
           inputs=("jobs.requests", "jobs.retry"), side_inputs=("jobs.status", "jobs.control", "jobs.batch"),
           outputs=("jobs.status", "jobs.results", "jobs.retry", "jobs.dlq", "alerts.deliveries"), replicas=2),
    Worker("audit", ("worker", "audit"), "at-least-once", needs_postgres=True,
           inputs=("geo.geofence-events", "geo.cep-matches", "alerts.status", "jobs.status"),
           outputs=("audit.dlq",)),
    # reads every group's committed offsets and the DLQs' ends, consumes nothing
    Worker("metrics", ("worker", "metrics"), "at-least-once", metrics_port=9105, in_stack=False),
)


def by_name(name: str) -> Worker:
    return next(w for w in WORKERS if w.name == name)
