"""The `geoflux` command: help everywhere, one-line failures, real work against the broker."""

import json
import os
import socket
import subprocess
import sys

import pytest

COMMANDS = [[], ["kafka"], ["kafka", "start"], ["kafka", "stop"], ["kafka", "status"],
            ["topics"], ["topics", "apply"], ["topics", "describe"], ["worker", "evaluator"],
            ["api"], ["geofences", "import"], ["demo"], ["up"], ["down"], ["status"]]


def geoflux(*args, env=None, timeout=120):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "geoflux")
def test_every_command_has_help(args):
    proc = geoflux(*args, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout


def test_wrong_bootstrap_is_one_line_and_nonzero():
    proc = geoflux("topics", "apply", env={"GEOFLUX_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                           "GEOFLUX_KAFKA_REQUEST_TIMEOUT_S": "2"})
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error")]
    assert lines == ["Error: no Kafka broker answered at 127.0.0.1:1 within 2s; start one with "
                     "`geoflux kafka start` or set GEOFLUX_KAFKA_BOOTSTRAP"]


def test_port_taken_is_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = geoflux("kafka", "start", env={"GEOFLUX_LOCAL_KAFKA_PORT": str(port),
                                              "GEOFLUX_LOCAL_KAFKA_DATA_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert f"port {port} on 127.0.0.1 is already taken" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_foreign_data_dir_is_refused(tmp_path):
    (tmp_path / "kraft").mkdir()
    (tmp_path / "kraft" / "meta.properties").write_text("cluster.id=someone-else\n")
    (tmp_path / "cluster.id").write_text("Gmine0000000000000000a")
    from services.devstack.local_process import free_port
    proc = geoflux("kafka", "start", env={"GEOFLUX_LOCAL_KAFKA_PORT": str(free_port()),
                                          "GEOFLUX_LOCAL_KAFKA_CONTROLLER_PORT": str(free_port()),
                                          "GEOFLUX_LOCAL_KAFKA_DATA_DIR": str(tmp_path)})
    assert proc.returncode != 0 and "holds another cluster's data" in proc.stderr


@pytest.mark.kafka
def test_topics_apply_twice_and_geofence_import(kafka_settings, tmp_path):
    env = {"GEOFLUX_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
           "GEOFLUX_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
           "GEOFLUX_KAFKA_PARTITIONS": str(kafka_settings.partitions)}
    first = geoflux("topics", "apply", env=env)
    assert first.returncode == 0 and first.stdout.strip() == "no changes"
    described = geoflux("topics", "describe", env=env)
    assert described.returncode == 0 and "DRIFT" not in described.stdout
    square = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]
    good = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
            "properties": {"name": "a", "tenant_id": "t"}}
    bad = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square[0][:-1]]},
           "properties": {"name": "b", "tenant_id": "t"}}
    path = tmp_path / "fences.geojson"
    other = dict(good, properties={"name": "a2", "tenant_id": "t"})  # ids default to names
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [good, other, bad]}))
    proc = geoflux("geofences", "import", str(path), env=env)
    assert proc.returncode == 1
    assert "imported 2 geofence(s), rejected 1" in proc.stdout
    assert "feature 2 (b): polygon ring 0: unclosed ring" in proc.stderr


@pytest.mark.slow
def test_up_prints_urls_and_down_stops_everything(tmp_path, postgres_dsn):
    """`geoflux up` on its own broker and ports, pointed at an existing PostgreSQL by its
    setting and without a registry by its flag; `geoflux down` from "another terminal"."""
    from services.devstack.local_process import pid_alive
    from tests.conftest import wait_for
    from tests.integration.geo_helpers import http
    from tests.integration.up_helpers import UpStack

    import uuid

    stack = UpStack(tmp_path, "--no-registry", GEOFLUX_PG_DSN=postgres_dsn,
                    GEOFLUX_AUDIT_TABLE=f"audit_{uuid.uuid4().hex[:8]}")
    try:
        stack.start().wait_ready(300)
        printed = stack.output()
        assert f"{stack.base}/api/v1/geofences" in printed
        assert "registry   off: registry-less schema ids" in printed
        assert f"postgres   {postgres_dsn.split('@')[-1]}  (not started by up)" in printed
        assert http("GET", stack.base + "/healthz", key=None)[0] == 200
        # `up` generated an operator key and a demo tenant key, printed them, and the API takes them
        operator = stack.keys["operator"]
        assert http("GET", stack.base + "/api/v1/geofences", key=None)[0] == 401
        # the demo feed's fences are registered
        wait_for(lambda: http("GET", stack.base + "/api/v1/geofences", key=operator)[1].get("total") == 5,
                 60, what="demo geofences")
        ready = http("GET", stack.base + "/readyz", key=None)[1]
        assert set(ready["checks"]) == {"kafka", "database"} and ready["checks"]["database"]["ok"]
        state = stack.status()
        shown = stack.geoflux("status")
        assert shown.returncode == 0 and "evaluator" in shown.stdout and "running" in shown.stdout
        down = stack.geoflux("down", timeout=150)
        assert down.returncode == 0 and down.stdout.strip() == "stopped"
        stack.proc.wait(60)
        assert stack.proc.returncode == 0
        assert state["pids"] and not any(pid_alive(p) for p in state["pids"])
        assert not port_open(stack.kafka_port) and not port_open(stack.api_port)
        assert stack.geoflux("status").returncode == 1
    finally:
        stack.kill()


def test_up_without_the_registry_its_topics_need_is_refused(tmp_path):
    """A stack whose records carry its registry's schema ids cannot run registry-less: refused
    in one line before anything starts."""
    from services.devstack.local_process import free_port

    (tmp_path / "stack").mkdir()
    (tmp_path / "stack" / "schema-ids").write_text("registry\n")
    port = free_port()
    proc = geoflux("up", "--no-registry", env={"GEOFLUX_LOCAL_KAFKA_DATA_DIR": str(tmp_path / "kafka"),
                                               "GEOFLUX_LOCAL_KAFKA_PORT": str(port),
                                               "GEOFLUX_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "Error: the topics of the stack in") and "cannot run without the registry" in proc.stderr
    assert not (tmp_path / "kafka").exists() and not port_open(port)


def port_open(port: int) -> bool:
    from services.devstack.local_process import port_is_open
    return port_is_open("127.0.0.1", port)


def test_missing_java_is_one_line(tmp_path):
    """A machine without Java: the reason and what to install, not a traceback."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    from services.devstack.local_process import free_port
    proc = subprocess.run([str(bin_dir / "python"), "-m", "services.cli", "kafka", "start"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PATH=str(bin_dir),
                                   GEOFLUX_LOCAL_KAFKA_PORT=str(free_port()),
                                   GEOFLUX_LOCAL_KAFKA_CONTROLLER_PORT=str(free_port()),
                                   GEOFLUX_LOCAL_KAFKA_DATA_DIR=str(tmp_path / "d")))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "Error: java not found: install Java 17+ (apt-get install openjdk-17-jre-headless)"]


@pytest.mark.kafka
def test_jobs_cli_submit_status_results_cancel(kafka_settings, tmp_path):
    from tests.integration.geo_helpers import start_cli, stop, worker_env

    env = worker_env(kafka_settings)
    worker = start_cli(kafka_settings, ["worker", "jobs", "--no-postgis"], "jobs", tmp_path)
    try:
        square = {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}}
        run = lambda *a: subprocess.run([sys.executable, "-m", "services.cli", *a], capture_output=True,
                                        text=True, env=env, timeout=120)
        out = run("jobs", "submit", "convex-hull", json.dumps(square), "--wait", "60")
        assert out.returncode == 0, out.stderr
        job_id, created, _ = out.stdout.splitlines()[0].split()
        assert created == "created" and json.loads(out.stdout.splitlines()[1])["geometry"]["type"] == "Polygon"
        assert json.loads(run("jobs", "status", job_id).stdout)["status"] == "successful"
        assert json.loads(run("jobs", "results", job_id).stdout)["geometry"]["type"] == "Polygon"
        again = run("jobs", "submit", "convex-hull", json.dumps(square))
        assert again.stdout.split()[:2] == [job_id, "existing"]
        slow = run("jobs", "submit", "sleep", '{"seconds": 60}').stdout.split()[0]
        assert run("jobs", "cancel", slow).stdout.strip() in ("dismissed", "running")
        bad = run("jobs", "submit", "buffer", json.dumps(square))
        assert bad.returncode == 1 and "distance_m is required" in bad.stderr
        missing = run("jobs", "results", slow)
        assert missing.returncode == 1 and "no results" in missing.stderr
    finally:
        stop(worker)
