"""deploy/ cannot run here (no cluster, no Docker engine), so its files are checked against the
code: Kubernetes manifests parsed and their fields asserted (kubeconform is not packaged for
Debian and its schemas would need a download), every command a real `geoflux` command, every
GEOFLUX_* variable a real setting, every dashboard query a metric the code exports, and every
Prometheus target a compose service on its --metrics-port."""

import json
import re
from pathlib import Path

import click
import pydantic_settings
import pytest
import yaml

from geoflux import settings as s
from services import metrics
from services.cli import main as cli

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCS = [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml"
        for d in yaml.safe_load_all(f.read_text()) if d]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
EXTRA_ENV = {"GEOFLUX_LOG_LEVEL"}  # read by services/logging.py, not a settings class


def of_kind(kind: str) -> list[dict]:
    return [d for d in DOCS if d["kind"] == kind]


def known_env() -> set[str]:
    classes = [c for c in vars(s).values() if isinstance(c, type)
               and issubclass(c, pydantic_settings.BaseSettings) and c is not pydantic_settings.BaseSettings]
    return {(c.model_config["env_prefix"] + f).upper() for c in classes for f in c.model_fields} | EXTRA_ENV


def resolves(args: list[str]) -> bool:
    """`geoflux ARGS` parses: the command path exists and every option is accepted."""
    try:
        cmd, rest = cli, list(args)
        while isinstance(cmd, click.Group):
            name, cmd, rest = cmd.resolve_command(click.Context(cmd), rest)
        cmd.make_context(name, rest)
        return True
    except click.exceptions.Exit:
        return True
    except click.ClickException:
        return False


def container_args(container: dict) -> list[str]:
    if "args" in container:
        return container["args"]
    script = container["command"][-1]  # sh -c "exec geoflux ... --instance ${HOSTNAME##*-}"
    words = script.replace("${HOSTNAME##*-}", "0").split()
    return words[words.index("geoflux") + 1:]


def test_every_manifest_has_kind_metadata_and_namespace():
    assert {d["kind"] for d in DOCS} >= {"Namespace", "ConfigMap", "Secret", "Job", "Deployment",
                                          "Service", "StatefulSet", "PodDisruptionBudget"}
    for d in DOCS:
        assert d["apiVersion"] and d["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"]), d["metadata"]["name"]
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "geoflux"


def test_api_deployment_service_probes_and_keys():
    [api] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "geoflux-api"]
    spec = api["spec"]
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    [c] = spec["template"]["spec"]["containers"]
    assert c["args"] == ["api"] and resolves(c["args"])
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = c["ports"][0]["containerPort"]
    config = of_kind("ConfigMap")[0]["data"]
    assert str(port) == config["GEOFLUX_API_PORT"] and config["GEOFLUX_API_HOST"] == "0.0.0.0"
    mount = c["volumeMounts"][0]["mountPath"]
    assert config["GEOFLUX_API_KEYS_FILE"].startswith(mount + "/")
    [svc] = [d for d in of_kind("Service") if d["metadata"]["name"] == "geoflux-api"]
    assert svc["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]


def test_workers_are_statefulsets_with_state_volume_and_pdb():
    sets = of_kind("StatefulSet")
    pdbs = {json.dumps(p["spec"]["selector"]["matchLabels"], sort_keys=True): p for p in of_kind("PodDisruptionBudget")}
    headless = {d["metadata"]["name"] for d in of_kind("Service") if d["spec"].get("clusterIP") == "None"}
    needed = {("worker", "evaluator"), ("worker", "alert-router"), ("worker", "alert-gate"),
              ("worker", "alert-status"), ("worker", "delivery"), ("worker", "jobs"), ("worker", "cep"),
              ("worker", "metrics"), ("worker", "sla-monitor"), ("worker", "job-alerts"), ("worker", "audit")}
    seen = set()
    for st in sets:
        spec = st["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"] == labels
        assert spec["serviceName"] in headless
        [claim] = spec["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"] and claim["spec"]["resources"]["requests"]["storage"]
        [c] = spec["template"]["spec"]["containers"]
        assert c["volumeMounts"][0]["name"] == claim["metadata"]["name"]
        args = container_args(c)
        assert resolves(args), args
        seen.add(tuple(args[:2]))
        if "--instance" in " ".join(c.get("command", [])):
            assert "${HOSTNAME##*-}" in c["command"][-1]  # the pod ordinal: a stable transactional id
        pdb = pdbs[json.dumps(labels, sort_keys=True)]
        assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")
        if "--metrics-port" in args:
            port = int(args[args.index("--metrics-port") + 1])
            assert c["ports"][0]["containerPort"] == port
            assert spec["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert needed <= seen, needed - seen
    cep = [container_args(st["spec"]["template"]["spec"]["containers"][0]) for st in sets]
    assert {a[a.index("--mode") + 1] for a in cep if "--mode" in a} == {"rekey", "entity", "geofence"}


def test_resolves_refuses_what_the_cli_refuses():
    assert not resolves(["worker", "evaluatr"])
    assert not resolves(["worker", "evaluator", "--no-such-option"])


def test_config_and_secret_hold_only_real_settings():
    [cm] = of_kind("ConfigMap")
    assert set(cm["data"]) <= known_env(), set(cm["data"]) - known_env()
    [secret] = of_kind("Secret")
    assert {k for k in secret["stringData"] if k.startswith("GEOFLUX_")} <= known_env()
    keys = json.loads(secret["stringData"]["api-keys.json"])
    assert all(len(k) >= 16 for k in keys)  # what services/api/auth.py accepts
    for d in of_kind("Deployment") + of_kind("StatefulSet") + of_kind("Job"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}]
            for e in c.get("env", []):
                assert e["name"] in known_env()
                assert e["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
                assert e["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]


def test_topic_creation_job():
    [job] = of_kind("Job")
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["topics", "apply"] and resolves(c["args"])
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_compose_runs_the_full_stack_with_real_commands():
    services = COMPOSE["services"]
    assert {"kafka", "registry", "postgis", "topics", "api", "evaluator", "alert-router", "alert-gate",
            "alert-status", "delivery", "jobs", "cep-rekey", "cep-entity", "cep-geofence", "metrics",
            "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        if svc.get("image", "").startswith("geoflux") or "build" in svc:
            assert resolves(svc["command"]), (name, svc["command"])


def test_prometheus_scrapes_every_metrics_port_in_compose():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    expected = {"api:8080"}
    for name, svc in COMPOSE["services"].items():
        cmd = svc.get("command") or []
        if "--metrics-port" in cmd:
            expected.add(f"{name}:{cmd[cmd.index('--metrics-port') + 1]}")
    assert targets == expected
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert exprs and all(set(metric_names(e)) <= exported_names() | {"up"} for e in exprs)


def exported_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if hasattr(value, "_name") and hasattr(value, "_type"):
            base = value._name
            names |= {base, base + "_total", base + "_bucket", base + "_count", base + "_sum"}
    return names


def metric_names(expr: str) -> list[str]:
    return re.findall(r"\b(geoflux_[a-z_]+)\b", expr)


def test_grafana_dashboard_queries_metrics_the_code_exports():
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "geoflux.json").read_text())
    used = [n for p in dash["panels"] for t in p["targets"] for n in metric_names(t["expr"])]
    assert used and set(used) <= exported_names(), set(used) - exported_names()
    for needed in ("geoflux_consumer_lag", "geoflux_locations_processed_total",
                   "geoflux_evaluation_latency_seconds_bucket", "geoflux_alert_delivery_seconds_bucket",
                   "geoflux_dlq_depth", "geoflux_job_queue_wait_seconds_bucket", "geoflux_job_run_seconds_bucket"):
        assert needed in used, needed
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] == "geoflux"


@pytest.mark.parametrize("path", ["deploy/grafana/provisioning/datasources/prometheus.yml",
                                  "deploy/grafana/provisioning/dashboards/geoflux.yml"])
def test_grafana_provisioning_parses(path):
    assert yaml.safe_load((ROOT / path).read_text())["apiVersion"] == 1
