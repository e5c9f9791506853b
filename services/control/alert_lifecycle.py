"""Acknowledging and resolving alerts: every origin (API, CLI, receiver webhooks) writes the
same AlertAction to `alerts.lifecycle`, durably, before it answers; the alert status stage
applies it (and stops escalation, and tells the channels of a resolution)."""

from __future__ import annotations

import hashlib
import time

from connectors.kafka_producer import ReliableProducer
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec


def record_action(kafka: KafkaSettings, codec: AvroCodec, producer: ReliableProducer, *,
                  alert_id: str, tenant_id: str, action: str, by: str, origin: str,
                  note: str | None = None, dedup: str | None = None) -> dict:
    """`dedup` (a receiver's delivery id) makes the action id stable, so a redelivered webhook
    is recognisable; otherwise every call is its own action."""
    at = int(time.time() * 1000)
    basis = dedup or f"{origin}:{by}:{at}:{time.perf_counter_ns()}"
    rec = {"action_id": hashlib.sha256(f"{alert_id}:{action}:{basis}".encode()).hexdigest()[:32],
           "alert_id": alert_id, "tenant_id": tenant_id, "action": action, "by": by,
           "origin": origin, "note": note, "at_ms": at}
    t = topic("alerts.lifecycle", kafka)
    producer.deliver([(t, codec.encode(t, "AlertAction", rec), alert_id)])
    return rec
