"""`geoflux up` / `geoflux down` / `geoflux status`: the whole local stack as child processes of
one command, supervised (services/devstack/supervisor.py).

`up` starts the broker (when the bootstrap address is the local broker's), applies the topic
catalogue, starts every worker, the API and (optionally) the demo feed, prints where each part
runs once the API answers, restarts what exits, and stops everything on Ctrl-C or SIGTERM.
`down` stops what a running `up` recorded in its status file, from another terminal; `status`
prints that file.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import click

from connectors.kafka_admin import apply
from geoflux.errors import ConfigurationError
from geoflux.settings import (ApiSettings, KafkaSettings, LocalKafkaSettings, LocalPostgresSettings,
                              LocalRegistrySettings, RegistrySettings, StackSettings)
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_postgres import LocalPostgres
from services.devstack.local_process import pid_alive
from services.devstack.local_registry import LocalRegistry
from services.devstack.restart_policy import RestartPolicy
from services.devstack.stack_parts import ExternalPart, ServicePart, WorkerPart
from services.devstack.supervisor import Supervisor
from services.workers import WORKERS


def stack_workers(with_postgres: bool) -> list[tuple[str, list[str]]]:
    """The workers `up` runs (services/workers.py), one instance each."""
    out = []
    for w in WORKERS:
        if not w.in_stack or (w.needs_postgres and not with_postgres):
            continue
        argv = w.command(instance="0")
        if w.name == "jobs" and not with_postgres:
            argv.append("--no-postgis")
        out.append((w.name, argv))
    return out


def stack_dir(local: LocalKafkaSettings) -> Path:
    return local.data_dir.parent / "stack"


class Stack:
    def __init__(self, kafka: KafkaSettings, local: LocalKafkaSettings, api: ApiSettings,
                 settings: StackSettings | None = None) -> None:
        self.kafka, self.local, self.api = kafka, local, api
        self.s = settings or StackSettings()
        self.dir = stack_dir(local)
        self.state_file = self.dir / "stack.json"
        self.broker = LocalKafka(local)
        self.pg_settings = LocalPostgresSettings()
        self.started_broker = False
        self._stopping: list[int] = []

    @property
    def uses_local_broker(self) -> bool:
        return self.kafka.bootstrap == self.broker.bootstrap

    def say(self, line: str) -> None:
        """A supervision event: on `up`'s output and in its log."""
        stamped = f"{datetime.now().strftime('%H:%M:%S')} {line}"
        click.echo(stamped)
        with open(self.dir / "up.log", "a") as log:
            log.write(stamped + "\n")

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

    def _api_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.api.host}:{self.api.port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def _env(self, name: str, base: dict[str, str]) -> dict[str, str]:
        return {**os.environ, **base, **self.s.part_env.get(name, {})}

    def _check(self) -> None:
        """Between startup steps: a SIGTERM (`geoflux down`) stops a starting stack too."""
        if self._stopping:
            raise KeyboardInterrupt

    def _start_services(self, sup: Supervisor, with_postgres: bool, with_registry: bool) -> dict[str, str]:
        """The broker, PostgreSQL + PostGIS and the schema registry, started together (or the
        existing ones the settings name); the environment that points the workers at them."""
        if not with_registry and self._marker() == "registry" and not RegistrySettings().url:
            raise ConfigurationError(f"the topics of the stack in {self.dir} carry its registry's schema "
                                     "ids: it cannot run without the registry (drop --no-registry, or "
                                     "remove the state directory for a fresh stack)")
        env = {"GEOFLUX_KAFKA_BOOTSTRAP": self.kafka.bootstrap}
        starting = []
        if self.uses_local_broker:
            self.started_broker = self.broker.pid() is None
            starting.append(sup.add(ServicePart("kafka", self.broker, self.started_broker,
                                                f"{self.broker.bootstrap} (data {self.local.data_dir})")))
        else:
            sup.add(ExternalPart("kafka", self.kafka.bootstrap))
        pg = None
        if os.environ.get("GEOFLUX_PG_DSN"):
            sup.add(ExternalPart("postgres", os.environ["GEOFLUX_PG_DSN"].split("@")[-1]))
            env["GEOFLUX_PG_DSN"] = os.environ["GEOFLUX_PG_DSN"]
        elif with_postgres:
            pg = LocalPostgres(self.pg_settings.data_dir or self.dir / "postgres", self.pg_settings.port,
                               host=self.pg_settings.host, start_timeout_s=self.pg_settings.start_timeout_s)
            starting.append(sup.add(ServicePart("postgres", pg, pg.pid() is None, pg.where)))
        registry = None
        if RegistrySettings().url:
            sup.add(ExternalPart("registry", RegistrySettings().url))
        elif with_registry and self._registry_ids_fit():
            registry = LocalRegistry(self._registry_settings())
            starting.append(sup.add(ServicePart("registry", registry, registry.pid() is None, registry.where)))
        try:
            sup.launch_together(starting)
        except RuntimeError as exc:
            raise ConfigurationError(f"{exc} (logs: {self.dir}; `geoflux up --no-postgres` / "
                                     "`--no-registry` runs without those)") from None
        if pg is not None:
            env["GEOFLUX_PG_DSN"] = pg.ensure_database(self.pg_settings.database)
        if registry is not None:
            env["GEOFLUX_SCHEMA_REGISTRY_URL"] = registry.url
            (self.dir / "schema-ids").write_text("registry\n")
        return env

    def _registry_settings(self) -> LocalRegistrySettings:
        """The registry's files in the stack directory unless GEOFLUX_LOCAL_REGISTRY_DATA_DIR
        says otherwise; its schemas kept on disk (the topics' records carry their ids)."""
        s = LocalRegistrySettings()
        data = s.data_dir if "data_dir" in s.model_fields_set else self.dir / "registry"
        return s.model_copy(update={"data_dir": data, "storage_dir": s.storage_dir or data / "storage"})

    def _registry_ids_fit(self) -> bool:
        """A broker whose topics an older `up` wrote without a registry holds registry-less
        schema ids, which a registry does not know: that stack stays registry-less."""
        if self._marker():
            return self._marker() == "registry"
        if not self.uses_local_broker or not any((self.local.data_dir / "kraft").glob("*geo.locations-0")):
            return True  # no catalogue there yet: its records will carry the registry's ids
        click.echo(f"registry   off: the broker's topics in {self.local.data_dir} were written with "
                   "registry-less schema ids (remove that directory for a fresh stack with a registry)")
        (self.dir / "schema-ids").write_text("registry-less\n")
        return False

    def _marker(self) -> str:
        """Which schema ids this stack's topics carry: `registry`, `registry-less`, or '' (new)."""
        path = self.dir / "schema-ids"
        return path.read_text().strip() if path.exists() else ""

    def _wait_for_api(self, sup: Supervisor, api: WorkerPart) -> None:
        timeout_s = self.s.api_start_timeout_s
        deadline = time.monotonic() + timeout_s
        while not self._api_answers():
            self._check()
            sup.tick()
            if sup.states[api.name].state == "given-up":
                raise ConfigurationError(f"the API did not start: {sup.states[api.name].last_error} "
                                         f"(log: {api.log})")
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the API did not answer within {timeout_s:.0f}s; see {api.log}")
            time.sleep(0.2)

    def up(self, with_demo: bool = True, with_postgres: bool = True, with_registry: bool = True) -> None:
        if self.state_file.exists() and pid_alive(json.loads(self.state_file.read_text())["up"]):
            raise ConfigurationError("a `geoflux up` is already running: run `geoflux down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        policy = RestartPolicy(self.s.restart_initial_s, self.s.restart_max_s,
                               self.s.restart_reset_after_s, self.s.crash_loop_exits,
                               self.s.crash_loop_window_s)
        sup = Supervisor(policy, self.state_file, self.say, lambda: {"broker": self.started_broker})
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.append(1))
        t0 = time.monotonic()
        try:
            base = self._start_services(sup, with_postgres, with_registry)
            timings = {"services": time.monotonic() - t0}
            sup.write_status()
            self._check()
            apply(self.kafka)
            self._callback_secret()
            # the API first, on its own: on a small machine a dozen Python workers starting at
            # once would share the cores with it, and the API is what says the stack is up
            api = sup.add(WorkerPart("api", ["api"], self._env("api", {
                **base, **self._api_keys(), "GEOFLUX_STACK_STATUS_FILE": str(self.state_file)}), self.dir))
            sup.launch(api)
            self._wait_for_api(sup, api)
            timings["api"] = time.monotonic() - t0 - timings["services"]
            demo = [("demo", ["demo"])] if with_demo else []
            for name, argv in [*stack_workers("GEOFLUX_PG_DSN" in base), *demo]:
                sup.launch(sup.add(WorkerPart(name, argv, self._env(name, base), self.dir)))
            sup.write_status()
            self._print_parts(sup)
            click.echo(f"{'started':<10} in {time.monotonic() - t0:.1f}s (services {timings['services']:.1f}s, "
                       f"then the API {timings['api']:.1f}s; the workers are starting)")
            click.echo("Ctrl-C (or `geoflux down`) stops everything; `geoflux status` shows each part.")
            while not self._stopping:
                sup.tick()
                time.sleep(0.5)  # supervision tick
        except KeyboardInterrupt:
            pass
        finally:
            sup.stop_all()
            self.state_file.unlink(missing_ok=True)

    def _print_parts(self, sup: Supervisor) -> None:
        base = f"http://{self.api.host}:{self.api.port}"
        for part in sup.parts:
            if part.kind == "service":
                ready = sup.states[part.name].ready_s
                note = "  (not started by up)" if not part.owned else f"  (ready in {ready:.1f}s)" if ready else ""
                click.echo(f"{part.name:<10} {part.where}{note}")
        names = {p.name for p in sup.parts}
        if "postgres" not in names:
            click.echo(f"{'postgres':<10} off: no audit trail, PostGIS tier or inbox (GEOFLUX_PG_DSN names one)")
        if "registry" not in names:
            click.echo(f"{'registry':<10} off: registry-less schema ids (GEOFLUX_SCHEMA_REGISTRY_URL names one)")
        click.echo(f"{'workers':<10} {', '.join(p.name for p in sup.parts if p.kind == 'worker')}")
        click.echo(f"{'api':<10} {base}/api/v1/geofences")
        click.echo(f"{'console':<10} {base}/console/")
        click.echo(f"{'health':<10} {base}/readyz")
        click.echo(f"{'logs':<10} {self.dir}")

    def down(self) -> str:
        if not self.state_file.exists():
            return "nothing to stop"
        state = json.loads(self.state_file.read_text())
        if not pid_alive(state["up"]):  # `up` died without cleaning up: stop what it owned
            owned = [p for p in state.get("parts", []) if p["owned"] and p["pid"]]
            for part in sorted(owned, key=lambda p: p["kind"] == "service"):
                if pid_alive(part["pid"]):
                    os.killpg(part["pid"], signal.SIGTERM)
            self.state_file.unlink(missing_ok=True)
            return "stopped (leftovers of an `up` that had died)"
        os.kill(state["up"], signal.SIGTERM)  # `up` stops its children and services
        deadline = time.monotonic() + 90
        while self.state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.state_file.exists():
            raise ConfigurationError(f"`geoflux up` (pid {state['up']}) did not stop within 90 s")
        return "stopped"

    def status(self) -> tuple[bool, list[str]]:
        """(running, lines): each part with its pid, state, restarts and last error."""
        if not self.state_file.exists():
            return False, [f"not running (no {self.state_file})"]
        state = json.loads(self.state_file.read_text())
        running = pid_alive(state["up"])
        age_s = time.time() - state["updated_ms"] / 1000
        head = (f"geoflux up pid {state['up']}, status {age_s:.0f}s old" if running
                else f"not running: `geoflux up` pid {state['up']} is gone (status {age_s:.0f}s old)")
        lines = [head, f"{'part':<14} {'state':<11} {'pid':>7} {'restarts':>8}  where / last error"]
        for p in state["parts"]:
            lines.append(f"{p['name']:<14} {p['state']:<11} {p['pid'] or '-':>7} {p['restarts']:>8}  {p['where']}")
            if p["last_error"] or p["last_exit"]:
                lines.append(f"{'':<14} last: {p['last_exit'] or ''}: {p['last_error'] or ''}")
        return running, lines
