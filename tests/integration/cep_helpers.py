"""Shared by the CEP end-to-end tests: patterns written straight to `geo.cep-patterns`, keyed
by tenant and id as the configuration store keys them, and the CEP workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

from connectors.kafka_producer import ReliableProducer
from geoflux.keys import scoped
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.patterns import parse_pattern
from tests.integration.geo_helpers import kill, start_cli

MODES = ("rekey", "entity", "geofence")


def put_patterns(settings: KafkaSettings, codec: AvroCodec, docs: list[dict], version: int = 1) -> None:
    """Each doc validated as the API would, then written as a ConfigRecord."""
    t = topic("geo.cep-patterns", settings)
    producer = ReliableProducer(settings)
    for doc in docs:
        p = parse_pattern(doc)
        rec = {"kind": "pattern", "id": p.pattern_id, "tenant_id": p.tenant_id, "version": version,
               "body": json.dumps(p.to_json()), "updated_ms": int(time.time() * 1000), "deleted": False}
        producer.send(t, codec.encode(t, "ConfigRecord", rec), key=scoped(p.tenant_id, p.pattern_id))
    producer.flush_or_raise(120)  # a broker just started under load can take a while to take writes


def start_cep(settings: KafkaSettings, log_dir: Path, modes=MODES, suffix: str = "") -> dict:
    return {m: start_cli(settings, ["worker", "cep", "--mode", m], f"cep-{m}{suffix}", log_dir)
            for m in modes}


def restart_cep(settings: KafkaSettings, procs: dict, log_dir: Path, modes, suffix: str) -> None:
    """SIGKILL the stages in `modes` and start them again."""
    for m in modes:
        kill(procs[m])
    procs.update(start_cep(settings, log_dir, modes, suffix))


def tracebacks(log_dir: Path) -> list[str]:
    return [f.name for f in log_dir.glob("cep-*.log") if "Traceback" in f.read_text(errors="replace")]
