"""Running the alert pipeline for tests: its four workers as processes, config written through
the same ConfigStore the API uses, geofence events published as the evaluator would."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.alert_config import AlertConfig  # noqa: F401  (re-exported for tests)
from tests.integration.geo_helpers import start_cli

FAST = {  # seconds instead of the seed's minutes, so tests finish; the logic is the same
    "GEOFLUX_ALERT_PRIMARY_BACKOFF_S": "[0.2, 0.4]",
    "GEOFLUX_ALERT_DLQ_BACKOFF_S": "[600, 600]",
    "GEOFLUX_ALERT_SEND_TIMEOUT_S": "2",
    "GEOFLUX_ALERT_BREAKER_OPEN_S": "2",
    "GEOFLUX_ALERT_RATE_PER_HOUR": json.dumps({s: 100000 for s in ("critical", "high", "warning", "info")}),
}

STAGES = {"router": ["worker", "alert-router"], "gate": ["worker", "alert-gate"],
          "status": ["worker", "alert-status"], "delivery": ["worker", "delivery"]}


def start_pipeline(settings: KafkaSettings, log_dir: Path, metrics_port: int | None = None,
                   **env) -> dict:
    procs = {}
    for name, args in STAGES.items():
        if name == "delivery" and metrics_port:
            args = [*args, "--metrics-port", str(metrics_port)]
        procs[name] = start_cli(settings, args, f"alert-{name}", log_dir, **{**FAST, **env})
    return procs


def geofence_event(i: int, tenant: str = "acme", event_type: str = "ENTER",
                   entity: str | None = None, geofence: str = "zone-7") -> dict:
    entity = entity or f"truck-{i}"
    return {"event_id": hashlib.sha256(f"{entity}{i}{event_type}".encode()).hexdigest()[:32],
            "event_type": event_type, "entity_id": entity, "geofence_id": geofence,
            "geofence_version": 1, "tenant_id": tenant, "lon": 1.0, "lat": 2.0,
            "ts_ms": int(time.time() * 1000), "source": f"loc:{i}", "reason": None,
            "produced_ms": None, "attributes": {}}


def publish_events(settings: KafkaSettings, codec: AvroCodec, events: list[dict]) -> None:
    t = topic("geo.geofence-events", settings)
    p = ReliableProducer(settings)
    for e in events:
        p.send(t, codec.encode(t, "GeofenceEvent", e), key=e["geofence_id"])
    p.flush_or_raise()


class StatusView:
    """alerts.status as a dict alert_id -> latest status."""

    def __init__(self, settings: KafkaSettings, codec: AvroCodec) -> None:
        self.latest: dict[str, dict] = {}
        self.reader = TopicReader(settings, topic("alerts.status", settings), "AlertStatus", codec,
                                  self._apply).load().follow()

    def _apply(self, key, rec, _msg) -> bool:
        if rec is not None:
            self.latest[key] = rec
        return True

    def by_status(self) -> dict[str, int]:
        with self.reader.lock:
            counts: dict[str, int] = {}
            for rec in self.latest.values():
                counts[rec["status"]] = counts.get(rec["status"], 0) + 1
            return counts

    def snapshot(self) -> dict[str, dict]:
        with self.reader.lock:
            return dict(self.latest)

    def close(self) -> None:
        self.reader.close()
