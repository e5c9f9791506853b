"""Versioned configuration objects (alert rules, channels, silences, CEP patterns) on
compacted topics: validated on write, durable (acks=all) before the write returns, and read
back through a followed view, so every API instance and worker sees the same objects."""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.errors import ValidationError
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec
from services.geofence_registry import NotFound


class ConfigStore:
    """`parse(body, id) -> object with .to_json()`; ids come from the body or the URL."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, topic: str, kind: str,
                 parse: Callable[[object, str | None], object], id_field: str,
                 producer: ReliableProducer | None = None) -> None:
        self.topic, self.kind, self.parse, self.id_field = topic, kind, parse, id_field
        self.codec = codec
        self.producer = producer or ReliableProducer(kafka)
        self._items: dict[str, dict] = {}  # id -> ConfigRecord
        self._lock = threading.Lock()
        self._reader = TopicReader(kafka, topic, "ConfigRecord", codec, self._apply)

    def start(self) -> "ConfigStore":
        self._reader.load().follow()
        return self

    def close(self) -> None:
        self._reader.close()

    def _apply(self, key: str, rec: dict | None, _msg) -> bool:
        with self._lock:
            if rec is None or rec["deleted"]:
                return self._items.pop(key, None) is not None
            current = self._items.get(key)
            if current is None or rec["version"] >= current["version"]:
                self._items[key] = rec
                return True
        return False

    @staticmethod
    def public(rec: dict) -> dict:
        return {**json.loads(rec["body"]), "version": rec["version"], "updated_ms": rec["updated_ms"]}

    def get(self, obj_id: str, tenant_id: str | None = None) -> dict:
        with self._lock:
            rec = self._items.get(obj_id)
        if rec is None or (tenant_id is not None and rec["tenant_id"] != tenant_id):
            raise NotFound(f"{self.kind} {obj_id} not found")
        return rec

    def exists(self, obj_id: str) -> bool:
        with self._lock:
            return obj_id in self._items

    def list(self, tenant_id: str | None = None) -> list[dict]:
        with self._lock:
            return sorted((r for r in self._items.values()
                           if tenant_id is None or r["tenant_id"] == tenant_id), key=lambda r: r["id"])

    def put(self, body: object, obj_id: str | None = None, *, create_only: bool = False,
            tenant_id: str | None = None) -> dict:
        obj = self.parse(body, obj_id)
        doc = obj.to_json()
        oid = doc[self.id_field]
        if tenant_id is not None and doc["tenant_id"] != tenant_id:
            raise ValidationError(f"tenant_id {doc['tenant_id']!r} is not your tenant")
        with self._lock:
            current = self._items.get(oid)
        if current is not None and create_only:
            raise ValidationError(f"{self.kind} {oid} already exists: use PUT to change it")
        rec = {"kind": self.kind, "id": oid, "tenant_id": doc["tenant_id"],
               "version": current["version"] + 1 if current else 1, "body": json.dumps(doc),
               "updated_ms": int(time.time() * 1000), "deleted": False}
        self.producer.deliver([(self.topic, self.codec.encode(self.topic, "ConfigRecord", rec), oid)])
        with self._lock:
            self._items[oid] = rec
        return rec

    def delete(self, obj_id: str, tenant_id: str | None = None) -> dict:
        current = self.get(obj_id, tenant_id)
        rec = dict(current, version=current["version"] + 1, deleted=True,
                   updated_ms=int(time.time() * 1000))
        self.producer.deliver([(self.topic, self.codec.encode(self.topic, "ConfigRecord", rec), obj_id),
                               (self.topic, None, obj_id)])
        with self._lock:
            self._items.pop(obj_id, None)
        return rec
