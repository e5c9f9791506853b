"""Dead-letter queues as people see them: list, show, redrive. Used by the API and the CLI.

A DLQ record keeps the original record, where it came from and why it failed. The view
shows the newest record per key (a delivery retried from the DLQ replaces its older entry),
hides what was redriven (`ops.dlq-redrives`) and, where the caller can tell, what has since
been resolved. Redrive writes the original back to where it came from.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Callable

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from geoflux.errors import NotFound

# DLQ topics by the name people use
DLQS = {"alerts": "alerts.dlq", "jobs": "jobs.dlq", "locations": "geo.locations.dlq", "cep": "geo.cep.dlq",
        "audit": "audit.dlq"}
# and the schema of the records they hold
DLQ_VALUE_SCHEMAS = {"alerts": "DeliveryAttempt", "jobs": "JobRequest", "locations": "LocationUpdate",
                     "cep": "GeofenceEvent",
                     "audit": None}  # several schemas: the original is shown as base64


def public(rec: dict, dlq: str, value_schema: str | None, codec: AvroCodec) -> dict:
    out = {k: v for k, v in rec.items() if k not in ("original_key", "original_value")}
    out["dlq"] = dlq
    out["original_key"] = rec["original_key"].decode(errors="replace") if rec["original_key"] else None
    value = rec["original_value"]
    try:
        out["original"] = codec.decode(value, value_schema) if value and value_schema else None
    except Exception:
        out["original"] = None
    if out["original"] is None and value:
        out["original_base64"] = base64.b64encode(value).decode()
    return out


class DlqView:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, name: str, value_schema: str | None,
                 producer: ReliableProducer | None = None,
                 rewrite: Callable[[dict], dict] | None = None,
                 resolved: Callable[[dict], bool] | None = None) -> None:
        self.name, self.codec, self.value_schema = name, codec, value_schema
        self.topic = topic(DLQS[name], kafka)
        self.t_redrives = topic("ops.dlq-redrives", kafka)
        self.producer = producer or ReliableProducer(kafka)
        self.rewrite, self.resolved = rewrite, resolved
        self._latest: dict[str, dict] = {}  # key -> newest DLQ record
        self._redriven: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._reader = TopicReader(kafka, self.topic, "DlqRecord", codec, self._apply)
        self._redrives = TopicReader(kafka, self.t_redrives, "ConfigRecord", codec, self._apply_redrive)

    def start(self) -> "DlqView":
        self._reader.load().follow()
        self._redrives.load().follow()
        return self

    def close(self) -> None:
        self._reader.close()
        self._redrives.close()

    def _apply(self, key: str, rec: dict | None, _msg) -> bool:
        if rec is not None:
            with self._lock:
                self._latest[self._identity(key, rec)] = rec
        return rec is not None

    @staticmethod
    def _identity(key: str, rec: dict) -> str:
        """A delivery or a job retried from its DLQ and failing again replaces its older entry
        (they are keyed by delivery / job id); a record a stage could not read is its own
        entry, whatever its key (garbage on several topics may share one)."""
        if rec.get("error_class") == "undecodable" or rec.get("stage") not in (None, "delivery", "jobs"):
            return rec["dlq_id"]
        return key

    def _apply_redrive(self, key: str, rec: dict | None, _msg) -> bool:
        if rec is not None:
            with self._lock:
                self._redriven[key] = rec
        return rec is not None

    def _open(self, rec: dict) -> bool:
        return rec["dlq_id"] not in self._redriven and not (self.resolved and self.resolved(rec))

    def list(self, include_closed: bool = False, tenant_of: Callable[[dict], str] | None = None,
             tenant_id: str | None = None) -> list[dict]:
        with self._lock:
            items = list(self._latest.values())
        items = [r for r in items if include_closed or self._open(r)]
        if tenant_id is not None and tenant_of is not None:
            items = [r for r in items if tenant_of(r) == tenant_id]
        items.sort(key=lambda r: r["last_failure_ms"], reverse=True)
        return [public(r, self.name, self.value_schema, self.codec) for r in items]

    def get_raw(self, dlq_id: str) -> dict:
        with self._lock:
            for rec in self._latest.values():
                if rec["dlq_id"] == dlq_id:
                    return rec
        raise NotFound(f"DLQ record {dlq_id} not found in {self.name}")

    def get(self, dlq_id: str) -> dict:
        rec = self.get_raw(dlq_id)
        return dict(public(rec, self.name, self.value_schema, self.codec),
                    redriven=self._redriven.get(dlq_id) is not None)

    def redrive(self, dlq_id: str, by: str = "api") -> dict:
        rec = self.get_raw(dlq_id)
        if dlq_id in self._redriven:
            raise NotFound(f"DLQ record {dlq_id} was already redriven")
        target = rec["redrive_topic"] or rec["original_topic"]
        value = rec["original_value"]
        if self.rewrite and value and self.value_schema:
            value = self.codec.encode(target, self.value_schema,
                                      self.rewrite(self.codec.decode(value, self.value_schema)))
        now = int(time.time() * 1000)
        marker = {"kind": "redrive", "id": dlq_id, "tenant_id": "", "version": 1,
                  "body": json.dumps({"dlq": self.name, "target": target, "by": by, "at_ms": now}),
                  "updated_ms": now, "deleted": False}
        self.producer.deliver([(target, value, rec["original_key"]),
                               (self.t_redrives, self.codec.encode(self.t_redrives, "ConfigRecord",
                                                                   marker), dlq_id)])
        with self._lock:
            self._redriven[dlq_id] = marker
        return {"dlq_id": dlq_id, "redriven_to": target, "at_ms": now}


def fresh_delivery(req: dict) -> dict:
    """A redriven delivery starts a new attempt budget: a person decided to try again."""
    now = int(time.time() * 1000)
    return dict(req, attempt=1, not_before_ms=now, created_ms=now, outcome=None,
                error_class=None, error_message=None, first_failure_ms=None)
