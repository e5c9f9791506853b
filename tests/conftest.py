"""Session-wide real services: a Kafka broker, a schema registry, PostgreSQL+PostGIS, moto.

Kafka: an external cluster when GEOFLUX_KAFKA_BOOTSTRAP is set; testcontainers when
GEOFLUX_TEST_DOCKER=1 and a Docker engine answers; otherwise the project's own jar-based KRaft
broker on free loopback ports (the default, and what CI uses: no Docker engine there).
Each test gets its own topic prefix, so tests never see each other's records.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

# Stages keep local state under GEOFLUX_STREAM_DATA_DIR (one directory per changelog topic,
# and every test has its own topic prefix): a throwaway root per test process, never ~/.local.
# xdist workers inherit the controller's environment, so a root this file chose in another
# process is replaced: each worker removes its own root at the end of its session, and a shared
# one vanished under the workers still running.
_STATE_OWNER = "GEOFLUX_TEST_STATE_OWNER"
if ("GEOFLUX_STREAM_DATA_DIR" not in os.environ
        or os.environ.get(_STATE_OWNER, str(os.getpid())) != str(os.getpid())):
    os.environ["GEOFLUX_STREAM_DATA_DIR"] = f"/tmp/geoflux-state-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    os.environ[_STATE_OWNER] = str(os.getpid())

# Every broker the suite starts (its own, the fault stacks', each `geoflux up`'s) lives minutes,
# and the brokers used two fifths of the suite's CPU on two cores. The quick JIT compiler alone
# halves a short-lived broker's CPU (measured: 12-14 against 22-26 CPU-s for a start, ten
# catalogues and a thousand transactions). Benchmarks run outside pytest keep the default.
os.environ.setdefault("GEOFLUX_LOCAL_KAFKA_JVM_OPTIONS", "-XX:TieredStopAtLevel=1")

from geoflux.settings import KafkaSettings, LocalKafkaSettings, LocalRegistrySettings  # noqa: E402
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_postgres import LocalPostgres
from services.devstack.local_process import free_port, port_is_open
from services.devstack.local_registry import LocalRegistry


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.05, what: str = "condition"):
    """Polls until `predicate()` is truthy; fails the test with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def docker_answers() -> bool:
    if os.environ.get("GEOFLUX_TEST_DOCKER") != "1" or not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def docker_kafka() -> str | None:
    """Where a Docker engine answers (and GEOFLUX_TEST_DOCKER=1): Kafka in testcontainers.
    Not exercised on the CI machine, which has no Docker engine."""
    if not docker_answers():
        yield None
        return
    from testcontainers.kafka import KafkaContainer

    container = (KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
                 .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
                 .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"))
    container.start()
    yield container.get_bootstrap_server()
    container.stop()


@pytest.fixture(scope="session")
def local_kafka(tmp_path_factory, docker_kafka) -> LocalKafka | None:
    if os.environ.get("GEOFLUX_KAFKA_BOOTSTRAP") or docker_kafka:
        yield None
        return
    settings = LocalKafkaSettings(data_dir=tmp_path_factory.mktemp("kafka"), port=free_port(),
                                  controller_port=free_port())
    broker = LocalKafka(settings)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def bootstrap(local_kafka, docker_kafka) -> str:
    return os.environ.get("GEOFLUX_KAFKA_BOOTSTRAP") or docker_kafka or local_kafka.bootstrap


@pytest.fixture
def kafka_settings(bootstrap, request) -> KafkaSettings:
    """Settings with a topic prefix unique to this test; the catalogue is applied."""
    from connectors.kafka_admin import apply

    partitions = getattr(request, "param", None) or 3
    s = KafkaSettings(bootstrap=bootstrap, partitions=partitions,
                      topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(s)
    return s


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory) -> str:
    if os.environ.get("GEOFLUX_SCHEMA_REGISTRY_URL"):
        yield os.environ["GEOFLUX_SCHEMA_REGISTRY_URL"]
        return
    reg = LocalRegistry(LocalRegistrySettings(data_dir=tmp_path_factory.mktemp("registry"),
                                              port=free_port()))
    yield reg.start()
    reg.stop()


@pytest.fixture(scope="session")
def postgres() -> LocalPostgres:
    """A throwaway PostgreSQL cluster (PostGIS available) on a free port, the same code `geoflux
    up` runs its own with; tests stop and start it to prove that work survives an outage."""
    cluster = LocalPostgres(Path(f"/tmp/geoflux-pg-{uuid.uuid4().hex[:8]}"), free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def postgres_dsn(postgres) -> str:
    return os.environ.get("GEOFLUX_PG_DSN") or postgres.dsn()


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """moto in server mode on loopback: boto3 speaks real HTTP to it."""
    port = free_port()
    proc = subprocess.Popen([shutil.which("moto_server") or "moto_server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 30, what="moto server")
        req = urllib.request.Request(url + "/moto-api/config", method="POST",
                                     data=b'{"batch": {"use_docker": false}}',
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session", autouse=True)
def _stream_state_root():
    yield os.environ["GEOFLUX_STREAM_DATA_DIR"]
    if os.environ.get(_STATE_OWNER) == str(os.getpid()):  # a root the user chose is theirs
        shutil.rmtree(os.environ["GEOFLUX_STREAM_DATA_DIR"], ignore_errors=True)
