"""Running `geoflux up` as a user would, on its own ports and state directory, and reading what
it says: its output, its status file, `geoflux status`, and the API it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from services.devstack.local_process import free_port
from tests.conftest import wait_for


class UpStack:
    def __init__(self, root: Path, *args: str, **env: str) -> None:
        self.root = root
        self.kafka_port, self.api_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GEOFLUX_SCHEMA_REGISTRY", "GEOFLUX_PG_", "GEOFLUX_KAFKA_"))}
        self.env.update(GEOFLUX_LOCAL_KAFKA_DATA_DIR=str(root / "kafka"),
                        GEOFLUX_LOCAL_KAFKA_PORT=str(self.kafka_port),
                        GEOFLUX_LOCAL_KAFKA_CONTROLLER_PORT=str(free_port()),
                        GEOFLUX_KAFKA_BOOTSTRAP=f"127.0.0.1:{self.kafka_port}",
                        GEOFLUX_LOCAL_REGISTRY_PORT=str(free_port()),
                        GEOFLUX_LOCAL_PG_PORT=str(free_port()),
                        GEOFLUX_API_PORT=str(self.api_port), GEOFLUX_LOG_LEVEL="WARNING",
                        # its stages' stores: two stacks of one test run must not share them
                        GEOFLUX_STREAM_DATA_DIR=str(root / "state"), **env)
        # PostgreSQL runs as the postgres user when we are root: a directory that user can
        # reach (pytest's own are private), removed at the end
        self.pg_dir = Path(f"/tmp/geoflux-up-pg-{uuid.uuid4().hex[:8]}")
        self.env.setdefault("GEOFLUX_LOCAL_PG_DATA_DIR", str(self.pg_dir))
        # a shared test machine can be slow: a broker recovering 200 partitions after a SIGKILL
        # took over the default 90 s there
        for part in ("KAFKA", "REGISTRY", "PG"):
            self.env.setdefault(f"GEOFLUX_LOCAL_{part}_START_TIMEOUT_S", "300")
        self.args = list(args)
        self.dir = root / "stack"
        self.out_path = root / "up.out"
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{self.api_port}"

    def geoflux(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> "UpStack":
        self.started = time.monotonic()
        out = open(self.out_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up", *self.args],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 300) -> float:
        """Until `up` says it is up; the seconds that took."""
        wait_for(lambda: "Ctrl-C" in self.output() or self.proc.poll() is not None, timeout_s,
                 interval_s=0.2, what="geoflux up ready")
        assert self.proc.poll() is None, self.output()
        return time.monotonic() - self.started

    def output(self) -> str:
        return self.out_path.read_text() if self.out_path.exists() else ""

    @property
    def keys(self) -> dict[str, str]:
        """who -> key, from what `up` printed: 'operator', 'tenant demo'."""
        keys = {}
        for line in self.output().splitlines():
            if line.startswith("api key"):
                _, _, key, who = line.split(maxsplit=3)
                keys[who.strip("()")] = key
        return keys

    def status(self) -> dict:
        return json.loads((self.dir / "stack.json").read_text())

    def part(self, name: str) -> dict:
        return next(p for p in self.status()["parts"] if p["name"] == name)

    def events_since(self, since_ms: int) -> list[dict]:
        """Geofence events with an event time at or after `since_ms`, read through the API."""
        req = urllib.request.Request(self.base + "/api/v1/replay", method="POST",
                                     data=json.dumps({"from": since_ms}).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.keys['operator']}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                lines = [json.loads(ln) for ln in resp.read().splitlines() if ln.strip()]
        except OSError:
            return []
        return [ln["record"] for ln in lines if "record" in ln]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            down = self.geoflux("down", timeout=150)
            assert down.returncode == 0, down.stderr
            self.proc.wait(60)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.geoflux("down", timeout=150)  # the leftovers of an `up` that died
        shutil.rmtree(self.pg_dir, ignore_errors=True)

    def close(self, *after) -> None:
        """A fixture's teardown: a clean stop, then whatever is left killed, then `after`
        (more cleanup); up's output and where its logs are, for a failed test's report."""
        try:
            self.stop()
        finally:
            self.kill()
            for step in after:
                step()
            print(f"\nup output:\n{self.output()}\nlogs: {self.dir}")
