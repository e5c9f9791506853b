"""`geoflux up` / `geoflux down`: the whole local stack as child processes of one command.

`up` starts the broker (when the bootstrap address is the local broker's), applies the topic
catalogue, starts an evaluator, the API and (optionally) the demo feed, prints the URLs once
they answer, and stops everything on Ctrl-C or SIGTERM. `down` stops what a running `up`
recorded in its state file, from another terminal.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
import urllib.request

import click

from connectors.kafka_admin import apply
from geoflux.errors import ConfigurationError
from geoflux.settings import ApiSettings, KafkaSettings, LocalKafkaSettings
from services.local_kafka import LocalKafka
from services.local_process import ManagedProcess, pid_alive


class Stack:
    def __init__(self, kafka: KafkaSettings, local: LocalKafkaSettings, api: ApiSettings) -> None:
        self.kafka, self.local, self.api = kafka, local, api
        self.dir = local.data_dir.parent / "stack"
        self.state_file = self.dir / "stack.json"
        self.broker = LocalKafka(local)

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka.bootstrap == self.broker.bootstrap

    def _spawn(self, name: str, *args: str, **env: str) -> ManagedProcess:
        proc = ManagedProcess(name, self.dir / f"{name}.pid", [self.dir / f"{name}.log"])
        proc.spawn([sys.executable, "-m", "services.cli", *args], self.dir / f"{name}.log",
                   env=dict(os.environ, GEOFLUX_KAFKA_BOOTSTRAP=self.kafka.bootstrap, **env))
        return proc

    def _api_keys(self) -> dict[str, str]:
        """The keys the API runs with: the configured ones, or (none configured) an operator
        key and a `demo` tenant key generated once into the stack directory, readable only by
        this user, and printed."""
        if self.api.keys or self.api.keys_file:
            return {}
        path = self.dir / "api-keys.json"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(json.dumps({f"op-{secrets.token_urlsafe(24)}": "*",
                                        f"demo-{secrets.token_urlsafe(24)}": "demo"}, indent=2))
        for key, tenant in json.loads(path.read_text()).items():
            click.echo(f"api key    {key}  ({'operator' if tenant == '*' else 'tenant ' + tenant})")
        return {"GEOFLUX_API_KEYS_FILE": str(path)}

    def _callback_secret(self) -> None:
        """Job callbacks are signed with a secret of this install: none configured, one is
        generated once into the stack directory (readable only by this user) and given to
        every child through GEOFLUX_ALERT_CALLBACK_SECRET_FILE."""
        if os.environ.get("GEOFLUX_ALERT_CALLBACK_SECRET") or os.environ.get("GEOFLUX_ALERT_CALLBACK_SECRET_FILE"):
            return
        path = self.dir / "callback-secret"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        os.environ["GEOFLUX_ALERT_CALLBACK_SECRET_FILE"] = str(path)
        click.echo(f"callbacks  signed with the secret in {path}")

    def _postgres_ready(self) -> bool:
        """The audit sink needs PostgreSQL/PostGIS: it runs only when GEOFLUX_PG_DSN is set and
        the audit table can be created there; otherwise `up` says why and goes on without it."""
        if not os.environ.get("GEOFLUX_PG_DSN"):
            click.echo("audit      off (set GEOFLUX_PG_DSN to a PostGIS database for the audit trail)")
            return False
        from connectors.audit_store import AuditStore
        from geoflux.settings import AuditSettings, PostgresSettings

        s = AuditSettings()
        try:
            AuditStore(PostgresSettings().dsn, s.table, min(s.connect_timeout_s, 3.0)).ensure_schema()
        except Exception as exc:  # any failure: the stack runs without the audit trail
            click.echo(f"audit      off ({str(exc).splitlines()[0][:160]})")
            return False
        return True

    def _api_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.api.host}:{self.api.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def up(self, with_demo: bool = True) -> None:
        if self.state_file.exists() and pid_alive(json.loads(self.state_file.read_text())["up"]):
            raise ConfigurationError("a `geoflux up` is already running: run `geoflux down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        started_broker = False
        if self.uses_local_broker and self.broker.pid() is None:
            self.broker.start()
            started_broker = True
        children: list[ManagedProcess] = []
        stopping: list[int] = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        try:
            apply(self.kafka)
            self._callback_secret()
            children.append(self._spawn("evaluator", "worker", "evaluator", "--instance", "0"))
            for stage in ("alert-router", "alert-gate", "alert-status", "delivery", "sla-monitor",
                          "job-alerts"):
                children.append(self._spawn(stage, "worker", stage))
            for mode in ("rekey", "entity", "geofence"):
                children.append(self._spawn(f"cep-{mode}", "worker", "cep", "--mode", mode))
            children.append(self._spawn("jobs", "worker", "jobs", "--no-postgis"))
            if self._postgres_ready():
                children.append(self._spawn("audit", "worker", "audit"))
            children.append(self._spawn("api", "api", **self._api_keys()))
            children[-1].wait_until(self._api_answers, 60, "the API answering")
            if with_demo:
                children.append(self._spawn("demo", "demo"))
            self.state_file.write_text(json.dumps({
                "up": os.getpid(), "pids": [c.pid() for c in children], "broker": started_broker}))
            base = f"http://{self.api.host}:{self.api.port}"
            click.echo(f"kafka      {self.kafka.bootstrap}")
            click.echo(f"api        {base}/api/v1/geofences")
            click.echo(f"health     {base}/healthz")
            click.echo(f"logs       {self.dir}")
            click.echo("Ctrl-C (or `geoflux down`) stops everything.")
            while not stopping:
                dead = [c for c in children if c.pid() is None]
                if dead:
                    raise ConfigurationError(f"{dead[0].name} exited; see {dead[0].logs[0]}")
                time.sleep(0.5)  # supervision tick
        except KeyboardInterrupt:
            pass
        finally:
            for child in reversed(children):
                child.stop(20)
            if started_broker:
                self.broker.stop()
            self.state_file.unlink(missing_ok=True)

    def down(self) -> str:
        if not self.state_file.exists():
            return "nothing to stop"
        state = json.loads(self.state_file.read_text())
        if not pid_alive(state["up"]):  # `up` died without cleaning up: stop its children
            for pid in state["pids"]:
                if pid and pid_alive(pid):
                    os.killpg(pid, signal.SIGTERM)
            if state["broker"]:
                self.broker.stop()
            self.state_file.unlink(missing_ok=True)
            return "stopped (leftovers of an `up` that had died)"
        os.kill(state["up"], signal.SIGTERM)  # `up` stops its children and the broker
        deadline = time.monotonic() + 90
        while self.state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.state_file.exists():
            raise ConfigurationError(f"`geoflux up` (pid {state['up']}) did not stop within 90 s")
        return "stopped"
