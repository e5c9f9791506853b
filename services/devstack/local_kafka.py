"""A single-node Apache Kafka (KRaft) from Maven Central jars, for this machine and for tests.

First use fetches the broker with Maven into a cache outside the repository
(`GEOFLUX_LOCAL_KAFKA_CACHE_DIR`); later starts reuse it. Every wait has a deadline and every
failure says what to do in one line.
"""

from __future__ import annotations

import base64
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from geoflux.errors import ConfigurationError
from geoflux.settings import LocalKafkaSettings
from services.devstack.local_process import ManagedProcess, free_port, port_is_open, wait_released

__all__ = ["LocalKafka", "BrokerStatus", "free_port", "port_is_open"]

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
JVM_FLAGS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"]
LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.lifecycle.name = kafka.server.BrokerLifecycleManager
logger.lifecycle.level = INFO
logger.tocontroller.name = kafka.server.NodeToControllerRequestThread
logger.tocontroller.level = INFO
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
"""
# The node is its own controller: when it fences itself as a broker (a pause longer than
# broker.session.timeout.ms, a suspended laptop) every partition is without a leader until the
# controller unfences it again. Those steps are logged at INFO only, so they are kept.


SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
PORT_RELEASE_S = 30.0  # how long a stop or start waits for a just-killed broker's ports


def _read_pem(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None


def _inline(pem: str) -> str:
    """A multi-line PEM as one properties value: each line ends with a continuation."""
    return " \\\n".join(line.strip() for line in pem.splitlines() if line.strip())


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str
    ready: bool

    def __str__(self) -> str:
        if not self.running:
            return f"stopped (bootstrap would be {self.bootstrap})"
        return f"{'ready' if self.ready else 'starting'} pid={self.pid} bootstrap={self.bootstrap}"


class LocalKafka:
    def __init__(self, settings: LocalKafkaSettings | None = None) -> None:
        self.s = settings or LocalKafkaSettings()
        self.libs = self.s.cache_dir / f"kafka-{self.s.version}" / "libs"
        self.data = self.s.data_dir
        self.log_dir = self.data / "logs"
        self.process = ManagedProcess("the Kafka broker", self.data / "broker.pid",
                                      [self.log_dir / "server.log", self.log_dir / "stdout.log"])

    @property
    def bootstrap(self) -> str:
        return f"{self.s.host}:{self.s.port}"

    # -- jars ---------------------------------------------------------------------------------
    def jars_present(self) -> bool:
        return any(self.libs.glob("kafka_2.13-*.jar")) and any(self.libs.glob("log4j-core-*.jar"))

    def ensure_jars(self) -> Path:
        if self.jars_present():
            return self.libs
        if not shutil.which("java"):
            raise ConfigurationError("java not found: install Java 17+ (apt-get install openjdk-17-jre-headless)")
        if not shutil.which("mvn"):
            raise ConfigurationError("mvn not found: install Maven (apt-get install maven) to fetch the Kafka jars")
        if not POM.exists():
            raise ConfigurationError(f"{POM} is missing: run geoflux from its source checkout (pip install -e .)")
        self.libs.parent.mkdir(parents=True, exist_ok=True)
        work = self.libs.parent / "build"
        work.mkdir(exist_ok=True)
        shutil.copy(POM, work / "pom.xml")
        cmd = ["mvn", "-B", "-q", "package", f"-Dkafka.version={self.s.version}",
               f"-DoutputDirectory={self.libs}"]
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True,
                                  timeout=self.s.fetch_timeout_s)
        except subprocess.TimeoutExpired:
            raise ConfigurationError(f"fetching Kafka {self.s.version} from Maven Central took over "
                                     f"{self.s.fetch_timeout_s:.0f}s; check network access to it") from None
        if proc.returncode != 0 or not self.jars_present():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise ConfigurationError(f"Maven could not fetch Kafka {self.s.version}: {' | '.join(tail)}")
        return self.libs

    # -- storage ------------------------------------------------------------------------------
    def _properties(self) -> str:
        s = self.s
        listeners = f"PLAINTEXT://{s.host}:{s.port}"
        advertised = listeners
        if s.sasl_ssl_port:
            listeners += f",SASL_SSL://{s.host}:{s.sasl_ssl_port}"
            advertised += f",SASL_SSL://{s.host}:{s.sasl_ssl_port}"
        return "\n".join([
            "process.roles=broker,controller", "node.id=1",
            f"controller.quorum.voters=1@{s.host}:{s.controller_port}",
            f"listeners={listeners},CONTROLLER://{s.host}:{s.controller_port}",
            f"advertised.listeners={advertised}",
            "inter.broker.listener.name=PLAINTEXT", "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            *self._sasl_ssl_properties(),
            f"log.dirs={self.data / 'kraft'}",
            "offsets.topic.replication.factor=1", "offsets.topic.num.partitions=6",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=6",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0", "default.replication.factor=1",
            "min.insync.replicas=1", "num.partitions=1", "auto.create.topics.enable=false",
            "log.cleaner.backoff.ms=5000", "transaction.remove.expired.transaction.cleanup.interval.ms=60000",
            "",
        ])

    def _sasl_ssl_properties(self) -> list[str]:
        """The SASL_SSL listener: SCRAM over TLS, the PEM certificate and key written inline
        (a Java properties value continued over lines), so no keystore file is needed."""
        s = self.s
        if not s.sasl_ssl_port:
            return []
        mech = s.sasl_mechanism.upper()
        if mech not in SCRAM_MECHANISMS:
            raise ConfigurationError(f"GEOFLUX_LOCAL_KAFKA_SASL_MECHANISM {s.sasl_mechanism!r}: the "
                                     f"local broker offers {' or '.join(SCRAM_MECHANISMS)}")
        if not (s.ssl_certificate and s.ssl_key):
            raise ConfigurationError("the SASL_SSL listener needs GEOFLUX_LOCAL_KAFKA_SSL_CERTIFICATE "
                                     "and GEOFLUX_LOCAL_KAFKA_SSL_KEY (PEM files)")
        chain, key = _read_pem(s.ssl_certificate), _read_pem(s.ssl_key)
        if "ENCRYPTED" in key or "BEGIN PRIVATE KEY" not in key:
            raise ConfigurationError(f"{s.ssl_key}: the broker takes an unencrypted PKCS#8 key "
                                     "(-----BEGIN PRIVATE KEY-----)")
        prefix = "listener.name.sasl_ssl."
        return [
            f"{prefix}sasl.enabled.mechanisms={mech}",
            f"{prefix}{mech.lower()}.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            f"{prefix}ssl.keystore.type=PEM",
            f"{prefix}ssl.keystore.certificate.chain={_inline(chain)}",
            f"{prefix}ssl.keystore.key={_inline(key)}",
        ]

    def _scram_args(self) -> list[str]:
        """`--add-scram` per user: KRaft takes SCRAM credentials into its metadata at format
        time (a data dir formatted earlier keeps the users it was formatted with)."""
        if not self.s.sasl_ssl_port:
            return []
        args = []
        for name, password in self.s.scram_users.items():
            secret = password.get_secret_value()
            if any(c in name + secret for c in ',[]="\\ '):
                raise ConfigurationError(f"SCRAM user {name!r}: names and passwords of the local "
                                         "broker cannot hold , [ ] = \" \\ or spaces")
            args.append(f"--add-scram={self.s.sasl_mechanism.upper()}=[name={name},password={secret}]")
        return args

    def _cluster_id(self) -> str:
        path = self.data / "cluster.id"
        if path.exists():
            return path.read_text().strip()
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cid = "G" + raw[1:]  # 22 chars, never starting with '-'
        path.write_text(cid)
        return cid

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", f"-Xmx{self.s.heap}", f"-Xms{self.s.heap}", *JVM_FLAGS, *shlex.split(self.s.jvm_options),
                f"-Dkafka.logs.dir={self.log_dir}",
                f"-Dlog4j2.configurationFile={self.data / 'log4j2.properties'}",
                "-cp", f"{self.libs}/*", main, *args]

    def format(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        meta = self.data / "kraft" / "meta.properties"
        cid = self._cluster_id()
        if meta.exists():
            text = meta.read_text()
            if f"cluster.id={cid}" not in text:
                raise ConfigurationError(
                    f"{self.data} holds another cluster's data (meta.properties disagrees with "
                    f"cluster.id): remove it or set GEOFLUX_LOCAL_KAFKA_DATA_DIR")
        elif (self.data / "kraft").exists() and any((self.data / "kraft").iterdir()):
            raise ConfigurationError(f"{self.data / 'kraft'} is not an empty Kafka data dir and "
                                     "has no meta.properties: remove it or choose another data dir")
        props = self.data / "server.properties"
        props.touch(mode=0o600)  # with a SASL_SSL listener it holds the broker's private key
        props.chmod(0o600)
        props.write_text(self._properties())
        (self.data / "log4j2.properties").write_text(LOG4J2)
        proc = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", "--config",
                       str(self.data / "server.properties"), f"--cluster-id={cid}",
                       "--ignore-formatted", *self._scram_args()),
            capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-2:]
            raise ConfigurationError(f"formatting {self.data} failed: {' | '.join(tail)}")

    # -- lifecycle ----------------------------------------------------------------------------
    def pid(self) -> int | None:
        return self.process.pid()

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap,
                            pid is not None and port_is_open(self.s.host, self.s.port))

    def start(self) -> str:
        """Starts (or finds running) and waits until the PLAINTEXT port accepts connections:
        it opens only once the broker is unfenced, so a connect is a valid readiness check."""
        if self.pid() is None:
            if not shutil.which("java"):
                raise ConfigurationError("java not found: install Java 17+ (apt-get install openjdk-17-jre-headless)")
            for port in (self.s.port, self.s.controller_port):
                # a broker killed a moment ago can hold its ports until the kernel is done with it
                if not wait_released(self.s.host, (port,), PORT_RELEASE_S):
                    raise ConfigurationError(
                        f"port {port} on {self.s.host} is already taken by another process: stop it "
                        "or set GEOFLUX_LOCAL_KAFKA_PORT / GEOFLUX_LOCAL_KAFKA_CONTROLLER_PORT")
            self.ensure_jars()
            self.format()
            self.process.spawn(self._java("kafka.Kafka", str(self.data / "server.properties")),
                               self.log_dir / "stdout.log")
        self.process.wait_until(lambda: port_is_open(self.s.host, self.s.port),
                                self.s.start_timeout_s, f"{self.bootstrap} open")
        return self.bootstrap

    def stop(self, *, kill: bool = False) -> bool:
        """SIGTERM (or SIGKILL with `kill`), waits, escalates. False if nothing was running."""
        stopped = self.process.stop(self.s.stop_timeout_s, kill=kill)
        # Both ports may linger briefly after the process is reaped (its threads still exiting);
        # a restart must not race them. A connect is no proof a port is free (a full accept
        # queue times connects out while the port is held): waiting on the client port alone,
        # a restart right after a SIGKILL found the controller port still taken in a CI run.
        wait_released(self.s.host, (self.s.port, self.s.controller_port), PORT_RELEASE_S)
        return stopped
