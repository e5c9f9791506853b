"""The geofence registry: validated versions written to the compacted geofence topic, and a
read view of that topic kept current by a background consumer.

The topic is the source of truth: every evaluator builds its index from it. The view answers
GET/list for the API; after a write it is updated at once (read-your-writes), and records
written by other API instances arrive through the consumer. Geofence ids are unique per tenant:
the topic key is `tenant/geofence_id`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from connectors.kafka_config import producer_config
from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.errors import NotFound, PermanentError, ValidationError
from geoflux.keys import check_tenant, scoped
from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.geofence import FenceSpec, geometry_json, import_feature, parse_feature


@dataclass(frozen=True, slots=True)
class StoredFence:
    record: dict

    def feature(self) -> dict:
        r = self.record
        props = {"name": r["name"], "tenant_id": r["tenant_id"], "version": r["version"],
                 "dwell_seconds": r["dwell_seconds"], "hysteresis_m": r["hysteresis_m"],
                 "updated_ms": r["updated_ms"], **r["properties"]}
        return {"type": "Feature", "id": r["geofence_id"], "geometry": json.loads(r["geometry"]),
                "properties": props}


class GeofenceRegistry:
    def __init__(self, kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec,
                 producer: ReliableProducer | None = None) -> None:
        self.kafka, self.geo, self.codec = kafka, geo, codec
        self.topic = topic("geo.geofences", kafka)
        self.producer = producer or ReliableProducer(kafka)
        # librdkafka refuses a record whose key and value exceed this (1,000,000 by default)
        self.max_record_bytes = int(producer_config(kafka).get("message.max.bytes", 1_000_000))
        self._fences: dict[str, StoredFence] = {}
        self._lock = threading.Lock()
        self._reader = TopicReader(kafka, self.topic, "Geofence", codec, self._apply)

    # -- the view ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        """Reads the topic to its end, then follows it in a background thread."""
        self._reader.load(timeout_s).follow()

    def _apply(self, key: str, rec: dict | None, _msg) -> bool:
        with self._lock:
            if rec is None:
                return self._fences.pop(key, None) is not None
            key = scoped(rec["tenant_id"], rec["geofence_id"])
            if rec["deleted"]:
                return self._fences.pop(key, None) is not None
            current = self._fences.get(key)
            if current is None or rec["version"] >= current.record["version"]:
                self._fences[key] = StoredFence(rec)
                return True
        return False

    def close(self) -> None:
        self._reader.close()

    # -- reads -------------------------------------------------------------------------------
    def get(self, geofence_id: str, tenant_id: str | None = None) -> StoredFence:
        """The tenant's fence; for an operator (no tenant), the only fence of that id, or a
        ValidationError asking for `tenant_id` when several tenants have one."""
        with self._lock:
            if tenant_id is not None:
                found = [f for f in (self._fences.get(scoped(tenant_id, geofence_id)),) if f is not None]
            else:
                found = [f for f in self._fences.values() if f.record["geofence_id"] == geofence_id]
        if not found:
            raise NotFound(f"geofence {geofence_id} not found")
        if len(found) > 1:
            raise ValidationError(f"{len(found)} tenants have a geofence {geofence_id}: give tenant_id")
        return found[0]

    def list(self, tenant_id: str | None = None, offset: int = 0, limit: int = 100) -> tuple[list[StoredFence], int]:
        with self._lock:
            items = sorted((f for f in self._fences.values()
                            if tenant_id is None or f.record["tenant_id"] == tenant_id),
                           key=lambda f: (f.record["tenant_id"], f.record["geofence_id"]))
        return items[offset:offset + limit], len(items)

    # -- writes ------------------------------------------------------------------------------
    def validate(self, feature: dict) -> FenceSpec:
        return parse_feature(feature, max_vertices=self.geo.max_vertices,
                             max_radius_m=self.geo.max_radius_m,
                             circle_segments=self.geo.circle_segments)

    def put(self, feature: dict, geofence_id: str | None = None, *,
            tenant_id: str | None = None, create_only: bool = False) -> StoredFence:
        """Creates (version 1) or replaces (version + 1); durable (acks=all) before it returns."""
        [stored] = self.put_many([(feature, geofence_id)], tenant_id=tenant_id,
                                 create_only=create_only)
        return stored

    def put_many(self, items: list[tuple[dict, str | None]], *, tenant_id: str | None = None,
                 create_only: bool = False) -> list[StoredFence]:
        """Validates every feature first, then writes them all and waits for one ack."""
        records = [self._record_for(f, gid, tenant_id, create_only) for f, gid in items]
        return self._write([(rec, self._encode(rec)) for rec in records])

    def _encode(self, rec: dict) -> bytes:
        """The record's bytes, refused (with the reason) if the producer would refuse them."""
        value = self.codec.encode(self.topic, "Geofence", rec)
        size = len(value) + len(scoped(rec["tenant_id"], rec["geofence_id"]).encode())
        if size > self.max_record_bytes:
            raise ValidationError(
                f"the geofence record is {size} bytes, over the {self.max_record_bytes}-byte "
                "limit of one Kafka record (message.max.bytes): simplify the geometry")
        return value

    def _write(self, encoded: list[tuple[dict, bytes]]) -> list[StoredFence]:
        for rec, value in encoded:
            self.producer.send(self.topic, value, key=scoped(rec["tenant_id"], rec["geofence_id"]))
        self.producer.flush_or_raise()
        stored = [StoredFence(rec) for rec, _ in encoded]
        with self._lock:
            for s in stored:
                self._fences[scoped(s.record["tenant_id"], s.record["geofence_id"])] = s
        return stored

    def _record_for(self, feature: dict, geofence_id: str | None, tenant_id: str | None,
                    create_only: bool) -> dict:
        spec = self.validate(feature)
        if tenant_id is not None and spec.tenant_id != tenant_id:
            raise ValidationError(f"properties.tenant_id {spec.tenant_id!r} is not your tenant")
        check_tenant(spec.tenant_id)
        gid = geofence_id or str(feature.get("id") or uuid.uuid4())
        if not isinstance(gid, str) or not gid or len(gid) > 200 or not gid.isprintable():
            raise ValidationError("geofence id must be a non-empty string of at most 200 printable "
                                  "characters")
        with self._lock:
            current = self._fences.get(scoped(spec.tenant_id, gid))
        if current is not None and create_only:
            raise ValidationError(f"geofence {gid} already exists: use PUT to change it")
        return {"geofence_id": gid, "tenant_id": spec.tenant_id, "name": spec.name,
                "version": current.record["version"] + 1 if current else 1,
                "geometry": geometry_json(spec.geometry), "dwell_seconds": spec.dwell_seconds,
                "hysteresis_m": spec.hysteresis_m, "properties": spec.properties,
                "updated_ms": int(time.time() * 1000), "deleted": False}

    def delete(self, geofence_id: str, tenant_id: str | None = None) -> StoredFence:
        """A `deleted` version (so evaluators can emit EXITs with it), then the tombstone."""
        current = self.get(geofence_id, tenant_id)
        key = scoped(current.record["tenant_id"], geofence_id)
        rec = dict(current.record, version=current.record["version"] + 1, deleted=True,
                   updated_ms=int(time.time() * 1000))
        self.producer.send(self.topic, self.codec.encode(self.topic, "Geofence", rec), key=key)
        self.producer.send(self.topic, None, key=key)
        self.producer.flush_or_raise()
        with self._lock:
            self._fences.pop(key, None)
        return StoredFence(rec)

    def import_collection(self, collection: dict, tenant_id: str | None = None, *,
                          id_property: str | None = None, name_property: str | None = None,
                          chunk: int = 1000) -> ImportReport:
        """Loads a FeatureCollection (ids, tenant and names as `import_feature` resolves them):
        every feature it can, each one it refuses reported with the reason."""
        if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection":
            raise ValidationError("expected a GeoJSON FeatureCollection")
        features = collection.get("features")
        if not isinstance(features, list):
            raise ValidationError("a FeatureCollection needs a list of features")
        report, first_of, ready = ImportReport(), {}, []
        for i, feature in enumerate(features):
            try:
                feature, gid = import_feature(feature, tenant_id=tenant_id,
                                              id_property=id_property, name_property=name_property)
                if gid in first_of:
                    raise ValidationError(f"id {gid!r} is feature {first_of[gid]}'s as well "
                                          "(--id-property names a property that tells them apart)")
                rec = self._record_for(feature, gid, tenant_id, False)
                ready.append((rec, self._encode(rec)))
                first_of[gid] = i
            except PermanentError as exc:
                report.refused.append((i, _label(feature, i, name_property), str(exc)))
            if len(ready) >= chunk:
                report.imported += len(self._write(ready))
                ready = []
        if ready:
            report.imported += len(self._write(ready))
        return report


@dataclass
class ImportReport:
    imported: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # (index, label, reason)


def _label(feature, i: int, name_property: str | None) -> str:
    """How a person finds the feature in the file: its index, and its name or id if it has one."""
    props = feature.get("properties") if isinstance(feature, dict) else None
    name = props.get(name_property or "name") if isinstance(props, dict) else None
    ident = feature.get("id") if isinstance(feature, dict) else None
    shown = name if isinstance(name, str) and name.strip() else ident
    return f"feature {i}" + (f" ({shown})" if shown not in (None, "") else "")
