"""Every worker geoflux runs, declared once.

`geoflux up` starts its parts from this list; a test holds the Compose file
(`docker-compose.kafka.yml`) and the Kubernetes manifests (`deploy/k8s/workers.yaml`) to it, and
checks that each worker is a command of the CLI. Adding a worker: a `geoflux worker` command in
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

    def command(self, instance: str | None = None, metrics: bool = False) -> list[str]:
        argv = list(self.argv)
        if self.instanced and instance is not None:
            argv += ["--instance", instance]
        if metrics and self.metrics_port:
            argv += ["--metrics-port", str(self.metrics_port)]
        return argv


WORKERS: tuple[Worker, ...] = (
    Worker("evaluator", ("worker", "evaluator"), "transactional", instanced=True, metrics_port=9101),
    Worker("alert-router", ("worker", "alert-router"), "transactional", instanced=True),
    Worker("alert-gate", ("worker", "alert-gate"), "transactional", instanced=True, metrics_port=9102),
    Worker("alert-status", ("worker", "alert-status"), "transactional", instanced=True),
    Worker("delivery", ("worker", "delivery"), "at-least-once", metrics_port=9103),
    Worker("sla-monitor", ("worker", "sla-monitor"), "at-least-once", metrics_port=9104),
    Worker("job-alerts", ("worker", "job-alerts"), "transactional", instanced=True),
    Worker("cep-rekey", ("worker", "cep", "--mode", "rekey"), "transactional", instanced=True),
    Worker("cep-entity", ("worker", "cep", "--mode", "entity"), "transactional", instanced=True),
    Worker("cep-geofence", ("worker", "cep", "--mode", "geofence"), "transactional", instanced=True),
    Worker("jobs", ("worker", "jobs"), "at-least-once"),
    Worker("audit", ("worker", "audit"), "at-least-once", needs_postgres=True),
    Worker("metrics", ("worker", "metrics"), "at-least-once", metrics_port=9105, in_stack=False),
)


def by_name(name: str) -> Worker:
    return next(w for w in WORKERS if w.name == name)
