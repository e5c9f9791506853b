"""A secured cluster: the local broker with a SASL_SSL (SCRAM-SHA-512) listener and Apicurio
Registry behind TLS, both with certificates of a throwaway CA made here. The whole stack runs
with every client on SASL_SSL — the bootstrap address is the SASL_SSL listener, which speaks
nothing else, so a client built without the security settings could not even connect — and
wrong credentials or an untrusted certificate stop clients within seconds, with the reason.

The registry's TLS is Apicurio's own (Quarkus HTTPS). Apicurio offers basic auth only through
an OIDC provider, so the basic-auth check is a small HTTPS proxy in this file that demands the
credentials and forwards to the real registry (simulated gate, real registry behind it).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.kafka_config import KafkaAuthenticationError, consumer_config
from geoflux.errors import ConfigurationError
from geoflux.settings import KafkaSettings, LocalKafkaSettings, LocalRegistrySettings, RegistrySettings
from schemas.catalogue import topic
from schemas.codec import codec_from_settings
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_process import ManagedProcess, free_port, port_is_open
from services.devstack.local_registry import LocalRegistry, find_java
from tests.conftest import wait_for
from tests.fakes import FakeReceiver
from tests.integration.geo_helpers import API_KEYS, http, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USER, PASSWORD = "geoflux-svc", "scram-pw-9f3a"
MECHANISM = "SCRAM-SHA-512"
SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
CONFIG_RECORD = {"kind": "channel", "id": "hook", "tenant_id": "t", "version": 1, "body": "{}",
                 "updated_ms": 1, "deleted": False}


# -- a throwaway CA and a certificate for 127.0.0.1 ------------------------------------------
@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(d: Path) -> Pki:
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(minutes=5),
                 not_valid_after=now + datetime.timedelta(days=1))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "geoflux test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki = Pki(d / "ca.pem", d / "server.pem", d / "server.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pki


# -- Apicurio Registry on HTTPS ----------------------------------------------------------------
class TlsRegistry:
    """Apicurio as `LocalRegistry` runs it, but serving HTTPS only (Quarkus's TLS settings)."""

    def __init__(self, d: Path, pki: Pki) -> None:
        self.dist = LocalRegistry(LocalRegistrySettings(data_dir=d))
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/apis/ccompat/v7"
        self.pki = pki
        self.process = ManagedProcess("the TLS registry", d / "registry.pid", [d / "registry.log"])
        self.log = d / "registry.log"

    def spawn(self) -> None:
        java, runner = find_java(21), self.dist.ensure_dist()
        self.process.spawn([str(java), "-Xmx384m", f"-Dquarkus.http.ssl-port={self.port}",
                            f"-Dquarkus.http.port={free_port()}", "-Dquarkus.http.host=127.0.0.1",
                            "-Dquarkus.http.insecure-requests=disabled",
                            f"-Dquarkus.http.ssl.certificate.files={self.pki.cert}",
                            f"-Dquarkus.http.ssl.certificate.key-files={self.pki.key}",
                            # its management interface binds 0.0.0.0:9000 unless told otherwise
                            f"-Dquarkus.management.port={free_port()}", "-Dquarkus.management.host=127.0.0.1",
                            "-Dquarkus.otel.sdk.disabled=true", "-jar", str(runner)],
                           self.log, cwd=self.dist.home)

    def _ready(self) -> bool:
        import urllib.request
        try:
            ctx = ssl.create_default_context(cafile=str(self.pki.ca))
            with urllib.request.urlopen(self.url + "/subjects", timeout=2, context=ctx) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait(self) -> None:
        self.process.wait_until(self._ready, 120, f"{self.url} answering")

    def stop(self) -> None:
        self.process.stop(20)


@dataclass
class Secured:
    bootstrap: str
    pki: Pki
    registry: TlsRegistry
    broker: LocalKafka

    def kafka(self, password: str = PASSWORD, **overrides) -> KafkaSettings:
        return KafkaSettings(**{"bootstrap": self.bootstrap, "security_protocol": "SASL_SSL",
                                "sasl_mechanism": MECHANISM, "sasl_username": USER,
                                "sasl_password": password, "ssl_ca_location": self.pki.ca,
                                "partitions": 2,
                                "topic_prefix": f"s{uuid.uuid4().hex[:8]}.", **overrides})

    def env(self, s: KafkaSettings, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEOFLUX_KAFKA_", "GEOFLUX_SCHEMA_"))}
        env.update({"GEOFLUX_KAFKA_BOOTSTRAP": s.bootstrap, "GEOFLUX_KAFKA_TOPIC_PREFIX": s.topic_prefix,
                    "GEOFLUX_KAFKA_PARTITIONS": str(s.partitions),
                    "GEOFLUX_KAFKA_SECURITY_PROTOCOL": s.security_protocol,
                    "GEOFLUX_KAFKA_SASL_MECHANISM": s.sasl_mechanism,
                    "GEOFLUX_KAFKA_SASL_USERNAME": s.sasl_username,
                    "GEOFLUX_KAFKA_SASL_PASSWORD": s.sasl_password.get_secret_value(),
                    "GEOFLUX_KAFKA_SSL_CA_LOCATION": str(s.ssl_ca_location),
                    "GEOFLUX_KAFKA_REQUEST_TIMEOUT_S": str(s.request_timeout_s),
                    "GEOFLUX_SCHEMA_REGISTRY_URL": self.registry.url,
                    "GEOFLUX_SCHEMA_REGISTRY_CA_LOCATION": str(self.pki.ca),
                    "GEOFLUX_LOG_LEVEL": "WARNING", **extra})
        return env


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Secured:
    d = tmp_path_factory.mktemp("secured")
    pki = make_pki(d)
    registry = TlsRegistry(d / "registry", pki)
    registry.spawn()  # starts while the broker formats and starts
    sasl_port = free_port()
    broker = LocalKafka(LocalKafkaSettings(
        data_dir=d / "kafka", port=free_port(), controller_port=free_port(), sasl_ssl_port=sasl_port,
        sasl_mechanism=MECHANISM, scram_users={USER: PASSWORD}, ssl_certificate=pki.cert,
        ssl_key=pki.key))
    try:
        broker.start()
        # the broker's config holds its private key inline: for its owner only
        assert (d / "kafka" / "server.properties").stat().st_mode & 0o777 == 0o600
        registry.wait()
        yield Secured(f"127.0.0.1:{sasl_port}", pki, registry, broker)
    finally:
        broker.stop()
        registry.stop()


def geoflux(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def spawn(env: dict, log_dir: Path, name: str, *args: str) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


# -- the whole stack on SASL_SSL ---------------------------------------------------------------
def test_the_stack_runs_with_every_client_on_sasl_ssl(secured, tmp_path):
    s = secured.kafka()
    port = free_port()
    env = secured.env(s, GEOFLUX_API_PORT=str(port), GEOFLUX_API_KEYS=API_KEYS,
                      GEOFLUX_ALERT_PRIMARY_BACKOFF_S="[0.2, 0.4]")
    applied = geoflux(env, "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    assert f"created {topic('geo.geofence-events', s)}" in applied.stdout
    described = geoflux(env, "topics", "describe")
    assert described.returncode == 0 and "DRIFT" not in described.stdout

    receiver = FakeReceiver()
    workers = {"evaluator": ["worker", "evaluator"], "router": ["worker", "alert-router"],
               "gate": ["worker", "alert-gate"], "status": ["worker", "alert-status"],
               "delivery": ["worker", "delivery"], "jobs": ["worker", "jobs", "--no-postgis"],
               "api": ["api"]}
    procs = {name: spawn(env, tmp_path, name, *args) for name, args in workers.items()}
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="API port")
        # readiness checks the broker over SASL_SSL and the registry over TLS with our CA
        ready = wait_for(lambda: (r := http("GET", f"{base}/readyz"))[0] == 200 and r[1], 60,
                         what="/readyz")
        assert ready["checks"]["kafka"]["ok"] and ready["checks"]["registry"]["ok"], ready
        channel = {"name": "hook", "kind": "webhook", "tenant_id": "t",
                   "settings": {"url": receiver.url + "/hook", "secret": "s"}}
        assert http("POST", f"{base}/api/v1/alerts/channels", channel)[0] == 201
        rule = {"rule_id": "enter", "tenant_id": "t", "severity": "high", "channels": ["hook"],
                "match": {"event_type": "ENTER"}, "title": "{entity_id} entered {geofence_id}"}
        assert http("POST", f"{base}/api/v1/alerts/rules", rule)[0] == 201
        # a geofence write and an evaluation through the durable stream
        status, fence = http("POST", f"{base}/api/v1/geofences",
                             {"type": "Feature", "geometry": SQUARE,
                              "properties": {"name": "yard", "tenant_id": "t"}})
        assert status == 201, fence

        answers = []

        def evaluated():
            answers.append(http("POST", f"{base}/api/v1/geoevent/evaluate",
                                {"entity_id": "truck", "lon": 0.5, "lat": 0.5, "tenant_id": "t",
                                 "timestamp": int(time.time() * 1000)}))
            st, body = answers[-1]
            return st == 200 and body["inside"] == [fence["id"]] and body
        # the evaluator learns the new fence from its compacted topic: retry until it has
        try:
            result = wait_for(evaluated, 90, interval_s=0.5, what="an evaluation inside the fence")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answers {answers[-3:]}") from None
        enter = [e for e in result["events"] if e["event_type"] == "ENTER"]
        assert len(enter) == 1
        # the alert pipeline: router -> gate -> status -> delivery, to the webhook
        wait_for(lambda: receiver.received(), 60, what="the ENTER alert delivered")
        assert "truck entered " + fence["id"] in receiver.received()[0].body.decode()
        wait_for(lambda: http("GET", f"{base}/api/v1/alerts?status=SENT")[1].get("total") == 1, 30,
                 what="the alert SENT")
        # a geoprocessing job through jobs.requests and the job worker
        status, job = http("POST", f"{base}/processes/buffer/execution",
                           {"inputs": {"geometry": SQUARE, "distance_m": 100}},
                           headers={"Prefer": "respond-async"})
        assert status == 201, job
        wait_for(lambda: http("GET", f"{base}/jobs/{job['jobID']}")[1]["status"] == "successful", 60,
                 what="the job successful")
        # a Faust-style (aiokafka) client with the same settings reads the event over SASL_SSL
        codec = codec_from_settings(RegistrySettings(url=secured.registry.url, ca_location=secured.pki.ca))
        assert enter[0]["event_id"] in asyncio.run(_aiokafka_event_ids(s, codec))
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-500:]}"
    finally:
        for proc in procs.values():
            stop(proc)
        receiver.close()
    # (on a loaded machine librdkafka logs connection setups cut short during the SASL
    # exchange; it reconnects, and none of them may stop a worker)
    logs = "".join((tmp_path / f"{name}.log").read_text() for name in workers)
    assert "Traceback" not in logs and "Kafka authentication failed" not in logs


async def _aiokafka_event_ids(s: KafkaSettings, codec) -> set[str]:
    from aiokafka import AIOKafkaConsumer

    from connectors.aiokafka_config import aiokafka_config

    consumer = AIOKafkaConsumer(topic("geo.geofence-events", s), group_id=f"probe-{uuid.uuid4().hex[:6]}",
                                auto_offset_reset="earliest", isolation_level="read_committed",
                                **aiokafka_config(s))
    await consumer.start()
    ids: set[str] = set()
    try:
        deadline = time.monotonic() + 30
        while not ids and time.monotonic() < deadline:  # the group's first assignment takes a moment
            batches = await consumer.getmany(timeout_ms=1000)
            ids |= {codec.decode(m.value, "GeofenceEvent")["event_id"]
                    for msgs in batches.values() for m in msgs}
        return ids
    finally:
        await consumer.stop()


# -- failing fast --------------------------------------------------------------------------------
def test_wrong_password_is_one_line_from_the_cli_and_stops_a_worker(secured, tmp_path):
    wrong = secured.kafka(password="not-the-password")
    env = secured.env(wrong)
    t0 = time.monotonic()
    applied = geoflux(env, "topics", "apply")
    took = time.monotonic() - t0
    assert applied.returncode == 1
    assert applied.stderr.splitlines() == [applied.stderr.strip()]  # one line, nothing else
    assert applied.stderr.startswith(f"Error: Kafka authentication failed at {secured.bootstrap}")
    assert "SASL authentication error" in applied.stderr and took < 15

    # a transactional worker would otherwise wait for its coordinator for ever
    t0 = time.monotonic()
    worker = spawn(env, tmp_path, "evaluator", "worker", "evaluator")
    try:
        wait_for(lambda: worker.poll() is not None, 20, what="the worker to exit")
    finally:
        stop(worker)
    assert worker.returncode == 1 and time.monotonic() - t0 < 20
    assert "Error: Kafka authentication failed" in (tmp_path / "evaluator.log").read_text()


def test_a_running_client_raises_the_authentication_failure(secured):
    """A client that gets past startup (the password changed since) raises from its poll."""
    from confluent_kafka import Consumer

    wrong = secured.kafka(password="rotated-away")
    consumer = Consumer(consumer_config(wrong, "probe"))
    consumer.subscribe([topic("geo.locations", wrong)])
    t0 = time.monotonic()
    try:
        with pytest.raises(KafkaAuthenticationError, match="SASL authentication error"):
            while time.monotonic() - t0 < 15:
                consumer.consume(10, 0.5)
    finally:
        consumer.close()
    assert time.monotonic() - t0 < 15


def test_an_untrusted_broker_certificate_is_named(secured):
    env = secured.env(secured.kafka(), GEOFLUX_KAFKA_SSL_CA_LOCATION="/etc/ssl/certs/ca-certificates.crt")
    applied = geoflux(env, "topics", "apply")
    assert applied.returncode == 1
    assert applied.stderr.startswith(f"Error: Kafka TLS failed at {secured.bootstrap}")
    assert "certificate verify failed" in applied.stderr


# -- the registry over TLS, and basic auth ----------------------------------------------------
def test_codec_against_the_registry_over_tls(secured):
    codec = codec_from_settings(RegistrySettings(url=secured.registry.url, ca_location=secured.pki.ca))
    rec = CONFIG_RECORD
    t = f"tls-{uuid.uuid4().hex[:6]}.alerts.channels"
    data = codec.encode(t, "ConfigRecord", rec)
    assert codec_from_settings(RegistrySettings(url=secured.registry.url, ca_location=secured.pki.ca)
                               ).decode(data, "ConfigRecord") == rec
    untrusted = codec_from_settings(RegistrySettings(url=secured.registry.url,
                                                     ca_location="/etc/ssl/certs/ca-certificates.crt"))
    with pytest.raises(ConfigurationError, match="TLS certificate not trusted"):
        untrusted.encode(t, "ConfigRecord", rec)


class BasicAuthProxy:
    """HTTPS in front of the registry that answers 401 without the right basic credentials
    and forwards everything else (simulated gate; the registry behind it is real)."""

    def __init__(self, upstream: str, pki: Pki, user: str, password: str) -> None:
        self.upstream, self.pki = upstream.rstrip("/"), pki
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}/apis/ccompat/v7"
        self.seen: list[str | None] = []
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        from aiohttp import ClientSession, web

        async def handle(request: web.Request) -> web.Response:
            self.seen.append(request.headers.get("Authorization"))
            if request.headers.get("Authorization") != self.expected:
                return web.Response(status=401, text='{"error_code": 401, "message": "Unauthorized"}')
            upstream = self.upstream + request.path_qs.removeprefix("/apis/ccompat/v7")
            ctx = ssl.create_default_context(cafile=str(self.pki.ca))
            async with ClientSession() as session:
                async with session.request(request.method, upstream, data=await request.read(),
                                           headers={"Content-Type": request.content_type}, ssl=ctx) as up:
                    return web.Response(status=up.status, body=await up.read(),
                                        content_type="application/json")

        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(str(self.pki.cert), str(self.pki.key))
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port,
                                                  ssl_context=server_ctx).start())
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_codec_sends_basic_auth_and_names_refused_credentials(secured):
    proxy = BasicAuthProxy(secured.registry.url, secured.pki, "reg-user", "reg-pw")
    rec = CONFIG_RECORD
    t = f"auth-{uuid.uuid4().hex[:6]}.alerts.channels"
    try:
        good = codec_from_settings(RegistrySettings(url=proxy.url, username="reg-user",
                                                    password="reg-pw", ca_location=secured.pki.ca))
        data = good.encode(t, "ConfigRecord", rec)
        assert good.decode(data, "ConfigRecord") == rec
        assert proxy.seen and set(proxy.seen) == {proxy.expected}
        bad = codec_from_settings(RegistrySettings(url=proxy.url, username="reg-user",
                                                   password="guess", ca_location=secured.pki.ca))
        with pytest.raises(ConfigurationError, match="refused our credentials"):
            bad.encode(t + "x", "ConfigRecord", rec)
    finally:
        proxy.close()
