"""Versioned configuration objects (alert rules, channels, silences, CEP patterns) on
compacted topics: validated on write, durable (acks=all) before the write returns, and read
back through a followed view, so every API instance and worker sees the same objects.

Ids are unique per tenant: the topic key is `tenant/id` (geoflux.keys), so two tenants can
both name a rule `speeding`, and neither learns that the other's exists."""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.errors import ValidationError
from geoflux.keys import check_tenant, scoped
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec
from geoflux.errors import NotFound


class ConfigStore:
    """`parse(body, id) -> object with .to_json()`; ids come from the body or the URL."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, topic: str, kind: str,
                 parse: Callable[[object, str | None], object], id_field: str,
                 producer: ReliableProducer | None = None) -> None:
        self.topic, self.kind, self.parse, self.id_field = topic, kind, parse, id_field
        self.codec = codec
        self.producer = producer or ReliableProducer(kafka)
        self._items: dict[str, dict] = {}  # tenant/id -> ConfigRecord
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
            key = scoped(rec["tenant_id"], rec["id"])
            current = self._items.get(key)
            if current is None or rec["version"] >= current["version"]:
                self._items[key] = rec
                return True
        return False

    @staticmethod
    def public(rec: dict) -> dict:
        return {**json.loads(rec["body"]), "version": rec["version"], "updated_ms": rec["updated_ms"]}

    def get(self, obj_id: str, tenant_id: str | None = None) -> dict:
        """The tenant's object; for an operator (no tenant), the only object of that id, or a
        ValidationError asking for `tenant_id` when several tenants have one."""
        with self._lock:
            if tenant_id is not None:
                found = [r for r in (self._items.get(scoped(tenant_id, obj_id)),) if r is not None]
            else:
                found = [r for r in self._items.values() if r["id"] == obj_id]
        if not found:
            raise NotFound(f"{self.kind} {obj_id} not found")
        if len(found) > 1:
            raise ValidationError(f"{len(found)} tenants have a {self.kind} {obj_id}: give tenant_id")
        return found[0]

    def exists(self, obj_id: str, tenant_id: str) -> bool:
        with self._lock:
            return scoped(tenant_id, obj_id) in self._items

    def list(self, tenant_id: str | None = None) -> list[dict]:
        with self._lock:
            return sorted((r for r in self._items.values()
                           if tenant_id is None or r["tenant_id"] == tenant_id),
                          key=lambda r: (r["tenant_id"], r["id"]))

    def put(self, body: object, obj_id: str | None = None, *, create_only: bool = False,
            tenant_id: str | None = None) -> dict:
        obj = self.parse(body, obj_id)
        doc = obj.to_json()
        oid, tenant = doc[self.id_field], check_tenant(doc["tenant_id"])
        if tenant_id is not None and tenant != tenant_id:
            raise ValidationError(f"tenant_id {tenant!r} is not your tenant")
        key = scoped(tenant, oid)
        with self._lock:
            current = self._items.get(key)
        if current is not None and create_only:
            raise ValidationError(f"{self.kind} {oid} already exists: use PUT to change it")
        rec = {"kind": self.kind, "id": oid, "tenant_id": tenant,
               "version": current["version"] + 1 if current else 1, "body": json.dumps(doc),
               "updated_ms": int(time.time() * 1000), "deleted": False}
        self.producer.deliver([(self.topic, self.codec.encode(self.topic, "ConfigRecord", rec), key)])
        with self._lock:
            self._items[key] = rec
        return rec

    def delete(self, obj_id: str, tenant_id: str | None = None) -> dict:
        current = self.get(obj_id, tenant_id)
        key = scoped(current["tenant_id"], obj_id)
        rec = dict(current, version=current["version"] + 1, deleted=True,
                   updated_ms=int(time.time() * 1000))
        self.producer.deliver([(self.topic, self.codec.encode(self.topic, "ConfigRecord", rec), key),
                               (self.topic, None, key)])
        with self._lock:
            self._items.pop(key, None)
        return rec
