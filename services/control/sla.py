"""Delivery SLA, measured continuously: every alert's creation (`alerts.alerts`) and every
delivery outcome (`alerts.outcomes`) over a trailing window, folded into attainment per
severity and channel (`streams.alerting.sla`). The API serves it; the SLA monitor raises an
alert of our own when attainment drops below target, through a channel other than the failing
one.
"""

from __future__ import annotations

import hashlib
import threading
import time

import structlog

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.settings import AlertSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.sla import ALL_CHANNELS, Delivery, attainment, parse_targets

log = structlog.get_logger("geoflux.sla")


class SlaView:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: AlertSettings) -> None:
        self.settings = settings
        self.targets = parse_targets(settings.sla_targets)
        self.alerts: dict[str, dict] = {}  # alert id -> {tenant, severity, created, channels, any}
        self.lock = threading.Lock()
        self.readers = [TopicReader(kafka, topic("alerts.alerts", kafka), "Alert", codec, self._on_alert),
                        TopicReader(kafka, topic("alerts.outcomes", kafka), "DeliveryAttempt", codec,
                                    self._on_outcome)]

    def _on_alert(self, _key: str, alert: dict | None, _msg) -> bool:
        if alert is None or alert["suppressed_reason"] or alert["action"] != "trigger":
            return False
        with self.lock:
            self.alerts.setdefault(alert["alert_id"], {
                "tenant": alert["tenant_id"], "severity": alert["severity"],
                "created": alert["created_ms"], "channels": dict.fromkeys(alert["channels"]),
                "any": None})
        return True

    def _on_outcome(self, _key: str, out: dict | None, _msg) -> bool:
        if out is None or out["outcome"] != "SENT" or out["action"] != "trigger":
            return False
        with self.lock:
            entry = self.alerts.get(out["alert_id"])
            if entry is None:
                return False
            at = out["created_ms"]
            entry["any"] = at if entry["any"] is None else min(entry["any"], at)
            ch = out["channel"]
            if ch in entry["channels"] and not out["fallback_for"]:  # a channel's own delivery
                prev = entry["channels"][ch]
                entry["channels"][ch] = at if prev is None else min(prev, at)
        return True

    def start(self) -> "SlaView":
        for reader in self.readers:
            reader.load().follow()
        return self

    def close(self) -> None:
        for reader in self.readers:
            reader.close()

    def rows(self, window_s: float | None = None, tenant: str | None = None,
             now_ms: int | None = None) -> list[dict]:
        now = now_ms or int(time.time() * 1000)
        window_ms = int((window_s or self.settings.sla_window_s) * 1000)
        deliveries = []
        with self.lock:
            horizon = now - 2 * max(window_ms, int(self.settings.sla_window_s * 1000))
            for aid in [a for a, e in self.alerts.items() if e["created"] < horizon]:
                del self.alerts[aid]  # bounded: nothing older than twice the window is kept
            for e in self.alerts.values():
                if tenant is not None and e["tenant"] != tenant:
                    continue
                deliveries.append(Delivery(e["severity"], ALL_CHANNELS, e["created"], e["any"]))
                deliveries += [Delivery(e["severity"], ch, e["created"], at) for ch, at in e["channels"].items()]
        return attainment(deliveries, self.targets, now, window_ms, self.settings.sla_min_samples)


def sla_alert(row: dict, settings: AlertSettings, now_ms: int) -> dict:
    """Our own alert for a breached row: one per severity, channel and hour (its id), routed
    around the failing channel."""
    hour = now_ms // 3_600_000
    subject = f"sla:{row['severity']}:{row['channel']}"
    channels = [c for c in settings.sla_alert_channels if c != row["channel"]]
    title = (f"Delivery SLA breached: {row['severity']} via {'all channels' if row['channel'] == ALL_CHANNELS else row['channel']}"
             f" at {row['attainment']:.2%} (target {row['target']:.2%} within {row['within_s']:g} s)")
    return {"alert_id": hashlib.sha256(f"{subject}:{hour}".encode()).hexdigest()[:32],
            "fingerprint": hashlib.sha256(subject.encode()).hexdigest()[:32],
            "tenant_id": settings.platform_tenant, "rule_id": "geoflux-sla", "severity": "critical",
            "title": title, "body": f"{row['missed']} of {row['decided']} alerts missed the target "
                                    f"in the last window; P95 {row['p95_s']} s",
            "channels": channels, "source_id": f"{subject}:{hour}",
            "labels": {"rule_id": "geoflux-sla", "severity": row["severity"], "channel": row["channel"]},
            "created_ms": now_ms, "fallback_channel": None, "source": "any",
            "suppressed_reason": None, "dedup_window_s": 3600.0, "escalation_policy": None,
            "action": "trigger", "resolve_key": None}


def run_monitor(kafka: KafkaSettings, codec: AvroCodec, settings: AlertSettings,
                stop: threading.Event, on_rows=None) -> None:
    """Checks attainment every interval; a breach becomes an alert candidate (through the
    gate: de-duplicated, persisted before any delivery)."""
    view = SlaView(kafka, codec, settings).start()
    producer = ReliableProducer(kafka)
    t_candidates = topic("alerts.candidates", kafka)
    try:
        while not stop.is_set():
            now = int(time.time() * 1000)
            rows = view.rows(now_ms=now)
            if on_rows:
                on_rows(rows)
            for row in (r for r in rows if r["breached"]):
                alert = sla_alert(row, settings, now)
                if not alert["channels"]:
                    log.error("SLA breached and no other channel to report it through",
                              severity=row["severity"], channel=row["channel"])
                producer.deliver([(t_candidates, codec.encode(t_candidates, "Alert", alert),
                                   settings.platform_tenant)])
                log.warning("SLA breached", severity=row["severity"], channel=row["channel"],
                            attainment=row["attainment"])
            stop.wait(settings.sla_check_interval_s)
    finally:
        view.close()
