"""The whole product on a broker of its own, for the fault matrix: every pipeline at once
(geofence events, CEP, alerts, jobs, audit, gateway), each worker a process that a fault can
SIGKILL, the broker a process that can be SIGKILLed, SIGSTOPped and restarted, PostgreSQL a
cluster that can be stopped, and the alerts' receiver a real local HTTP server that can be told
to fail. Load is the synthetic trajectories of tests/scenario.py, whose expected events are
computed independently of geoflux."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from connectors.kafka_admin import apply
from connectors.kafka_producer import ReliableProducer
from geoflux.errors import TransientError
from geoflux.keys import scoped
from geoflux.settings import KafkaSettings, LocalKafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import FakeReceiver
from tests.integration.geo_helpers import (API_KEYS, OPERATOR_KEY, EventCollector, http, kill,
                                           start_cli, stop)
from tests.scenario import make_scenario

TENANT = "acme"
# lateness above what a restart takes here (group session timeout, restore, two shared cores):
# a stage killed mid-stream must not see its own re-read events as late
CEP_PATTERN = {"pattern_id": "two-fences", "severity": "info", "kind": "sequence", "within_s": 3600,
               "lateness_s": 15, "steps": [{"event_type": "ENTER"}, {"event_type": "ENTER"}]}
RULE = {"rule_id": "every-enter", "severity": "warning", "match": {"event_type": ["ENTER"]},
        "channels": ["hook"], "title": "{entity_id} entered {geofence_id}", "body": "at {ts}",
        "dedup_window_s": 0}
FAST_ALERTS = {"GEOFLUX_ALERT_PRIMARY_BACKOFF_S": "[0.5, 1, 2]", "GEOFLUX_ALERT_PRIMARY_ATTEMPTS": "8",
               "GEOFLUX_ALERT_TOTAL_ATTEMPTS": "12", "GEOFLUX_ALERT_DLQ_BACKOFF_S": "[2, 4]",
               "GEOFLUX_ALERT_BREAKER_OPEN_S": "3", "GEOFLUX_ALERT_SEND_TIMEOUT_S": "2",
               "GEOFLUX_ALERT_RATE_PER_HOUR": json.dumps({s: 10**6 for s in ("critical", "high", "warning", "info")})}

# name -> CLI args; the pipelines each worker serves
WORKERS = {
    "evaluator": ["worker", "evaluator", "--instance", "0"],
    "cep-rekey": ["worker", "cep", "--mode", "rekey"],
    "cep-entity": ["worker", "cep", "--mode", "entity"],
    "alert-router": ["worker", "alert-router"],
    "alert-gate": ["worker", "alert-gate"],
    "alert-status": ["worker", "alert-status"],
    "delivery": ["worker", "delivery"],
    "jobs": ["worker", "jobs", "--no-postgis"],
    "audit": ["worker", "audit"],
    "api": ["api"],
}


class FaultStack:
    def __init__(self, root: Path, pg_dsn: str, *, entities: int = 40, steps: int = 48,
                 fences: int = 600) -> None:
        self.root, self.pg_dsn = root, pg_dsn
        self.broker = LocalKafka(LocalKafkaSettings(data_dir=root / "kafka", port=free_port(),
                                                    controller_port=free_port()))
        self.kafka = KafkaSettings(bootstrap="", partitions=3, topic_prefix="f.")
        self.codec = AvroCodec()
        self.scenario = make_scenario(n_fences=fences, n_entities=entities, steps=steps, seed=5,
                                      t0_ms=int(time.time() * 1000) - steps * 1000 - 60_000)
        self.steps = steps
        self.sent_steps = 0
        self.receiver = FakeReceiver()
        self.api_port = free_port()
        self.audit_table = f"audit_{uuid.uuid4().hex[:8]}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self.jobs: dict[str, str] = {}  # idempotency key -> job id
        self.poison: dict[str, int] = {}  # logical topic -> garbage records published

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FaultStack":
        self.broker.start()
        self.kafka = KafkaSettings(bootstrap=self.broker.bootstrap, partitions=3, topic_prefix="f.")
        apply(self.kafka)
        self._configure()
        for name in WORKERS:
            self._spawn(name)
        wait_for(lambda: port_is_open("127.0.0.1", self.api_port), 90, what="the API")
        self.events = EventCollector(self.kafka, self.codec)
        self.matches = EventCollector(self.kafka, self.codec, "geo.cep-matches", "CepMatch")
        self.dlqs = {logical: EventCollector(self.kafka, self.codec, logical, "DlqRecord")
                     for logical in ("geo.locations.dlq", "geo.cep.dlq", "alerts.dlq", "jobs.dlq", "audit.dlq")}
        from tests.faults.gateway_client import GatewayClient
        self.gateway = GatewayClient(f"ws://127.0.0.1:{self.api_port}/api/v1/stream", OPERATOR_KEY).start()
        return self

    def _env(self) -> dict:
        return {"GEOFLUX_API_PORT": str(self.api_port), "GEOFLUX_API_KEYS": API_KEYS,
                "GEOFLUX_PG_DSN": self.pg_dsn, "GEOFLUX_AUDIT_TABLE": self.audit_table,
                "GEOFLUX_AUDIT_BATCH_SIZE": "500", "GEOFLUX_AUDIT_BACKOFF_S": "[0.2, 0.5, 1, 2]",
                "GEOFLUX_AUDIT_CONNECT_TIMEOUT_S": "2", "PYTHONUNBUFFERED": "1",
                # the stall watch at a fifth of its default, so that a worker stuck after a
                # broker fault is ended and started again within the settle deadline (in two CI
                # runs the audit sink sat out the whole deadline after the SIGSTOP); a broker
                # away past it ends the at-least-once workers too, and they are started again
                "GEOFLUX_KAFKA_GROUP_STALL_S": "120",
                "GEOFLUX_STREAM_DATA_DIR": str(self.root / "state"), **FAST_ALERTS}

    def _spawn(self, name: str) -> None:
        self.procs[name] = start_cli(self.kafka, WORKERS[name], name, self.root, **self._env())

    def _configure(self) -> None:
        from services.control.alert_config import AlertConfig
        from services.control.config_store import ConfigStore
        from services.control.geofence_registry import GeofenceRegistry
        from geoflux.settings import GeofenceSettings
        from streams.cep.patterns import parse_pattern

        reg = GeofenceRegistry(self.kafka, GeofenceSettings(), self.codec)
        reg.start()
        reg.put_many([(f, f["id"]) for f in self.scenario.features(TENANT)])
        reg.close()
        config = AlertConfig(self.kafka, self.codec).start()
        config.channels.put({"name": "hook", "kind": "webhook", "tenant_id": TENANT,
                             "settings": {"url": self.receiver.url + "/hook",
                                          "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
        config.rules.put({**RULE, "tenant_id": TENANT})
        config.close()
        patterns = ConfigStore(self.kafka, self.codec, topic("geo.cep-patterns", self.kafka), "pattern",
                               lambda body, pid: parse_pattern(body, pid), "pattern_id").start()
        patterns.put({**CEP_PATTERN, "tenant_id": TENANT})
        patterns.close()

    def close(self) -> None:
        for closer in [self.gateway.close, self.events.close, self.matches.close,
                       *(d.close for d in getattr(self, "dlqs", {}).values())]:
            try:
                closer()
            except Exception:  # teardown goes on whatever one reader says
                pass
        for proc in self.procs.values():
            stop(proc)
        self.receiver.close()
        if self.broker.pid() is not None:
            os.kill(self.broker.pid(), signal.SIGCONT)
        self.broker.stop()

    # -- load ---------------------------------------------------------------------------------
    def send_steps(self, n: int) -> None:
        """The next `n` steps of every entity's trajectory onto geo.locations (keyed tenant/entity),
        retried while the broker is away, as any producer would."""
        t = topic("geo.locations", self.kafka)
        first, self.sent_steps = self.sent_steps, min(self.steps, self.sent_steps + n)
        records = []
        for step in range(first, self.sent_steps):
            for entity, track in self.scenario.tracks.items():
                lon, lat, ts = track[step]
                rec = {"entity_id": entity, "tenant_id": TENANT, "lon": lon, "lat": lat, "ts_ms": ts,
                       "attributes": {}, "produced_ms": int(time.time() * 1000)}
                records.append((t, self.codec.encode(t, "LocationUpdate", rec), scoped(TENANT, entity)))
        self._deliver(records)

    def _deliver(self, records: list) -> None:
        deadline = time.monotonic() + 240
        while True:
            try:
                ReliableProducer(self.kafka).deliver(records, timeout_s=60)
                return
            except TransientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def submit_jobs(self, n: int) -> None:
        """`n` small jobs through the API, each with its own Idempotency-Key; a request that
        fails (the API or the broker away) is sent again with the same key."""
        for _ in range(n):
            key = f"job-{len(self.jobs):04d}"
            body = {"inputs": {"geometry": {"type": "Point", "coordinates": [0.5, 0.5]}, "distance_m": 10}}
            deadline = time.monotonic() + 180
            while True:
                try:
                    status, answer = http("POST", f"http://127.0.0.1:{self.api_port}/processes/buffer/execution",
                                          body, key=OPERATOR_KEY, timeout=20,
                                          headers={"Prefer": "respond-async", "Idempotency-Key": key,
                                                   "X-Geoflux-Tenant": TENANT})
                except OSError:
                    status, answer = 0, {}
                if status in (200, 201):
                    self.jobs[key] = answer["jobID"]
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"job {key} could not be submitted: {status} {answer}")
                time.sleep(1)

    def publish_garbage(self) -> None:
        """Bytes that are no record of ours onto every input topic: not our wire format, a
        magic byte with an unknown schema id, a truncated record."""
        good = self.codec.encode(topic("geo.locations", self.kafka), "LocationUpdate",
                                 {"entity_id": "x", "tenant_id": TENANT, "lon": 0.0, "lat": 0.0,
                                  "ts_ms": 1, "attributes": {}, "produced_ms": None})
        garbage = [b"not avro at all", b"\x00\x7f\xff\xff\xfe" + b"\x02" * 20, good[:9], b"\x00"]
        for logical in ("geo.locations", "geo.geofence-events", "geo.cep-input", "alerts.candidates",
                        "alerts.alerts", "alerts.outcomes", "alerts.lifecycle", "alerts.deliveries",
                        "alerts.retry", "jobs.requests", "jobs.retry", "jobs.status"):
            t = topic(logical, self.kafka)
            self._deliver([(t, g, f"{TENANT}/poison-{i}") for i, g in enumerate(garbage)])
            self.poison[logical] = self.poison.get(logical, 0) + len(garbage)

    # -- faults -------------------------------------------------------------------------------
    def kill_worker(self, name: str) -> None:
        kill(self.procs[name])
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self._spawn(name)

    def revive_exited(self) -> list[str]:
        """What a supervisor does: a worker that exited is started again."""
        gone = [n for n, p in self.procs.items() if p.poll() is not None]
        for name in gone:
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self._spawn(name)
        return gone

    def kill_broker(self) -> None:
        self.broker.stop(kill=True)

    def start_broker(self) -> None:
        self.broker.start()

    def pause_broker(self, seconds: float) -> None:
        pid = self.broker.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            self._idle(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    @staticmethod
    def _idle(seconds: float) -> None:
        time.sleep(seconds)  # the fault's duration; the phase's settle loop revives what exited
