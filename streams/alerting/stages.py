"""The transactional stages of the alert pipeline.

    geo.geofence-events ─┐
    geo.cep-matches ─────┼─ AlertRouter ─ alerts.candidates (by tenant) ─ AlertGate ─┬─ alerts.alerts
    jobs.status ─────────┘  rules                                          silences  └─ alerts.deliveries
    alerts.alerts + alerts.outcomes ─ AlertStatusStage ─ alerts.status (compacted, its changelog)

Each stage is a `TransactionalProcessor`: its outputs and offsets commit together, so a crash
never duplicates or loses an alert. An alert is written (PENDING) before any delivery exists.
"""

from __future__ import annotations

import hashlib

import structlog

from geoflux.errors import ValidationError
from geoflux.settings import AlertSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.delivery_policy import overall_status
from streams.alerting.noise import Silence, TenantNoiseState, decide, fingerprint, parse_silence
from streams.alerting.rules import AlertRule, flatten, matches, parse_rule, render
from streams.alerting.sensor import AlertSensor, NullSensor
from streams.cep.patterns import parse_pattern, pattern_alert_rule
from streams.txn_processor import Batch, ConfigSideInput, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.alerts")

# source topic -> (schema, source kind, id field, label fields)
SOURCES = {
    "geo.geofence-events": ("GeofenceEvent", "geofence", "event_id",
                            ("entity_id", "geofence_id", "event_type")),
    "geo.cep-matches": ("CepMatch", "cep", "match_id", ("pattern_id", "key")),
    "jobs.status": ("JobStatus", "job", "job_id", ("job_id", "process_id", "status")),
}


def alert_id_for(rule_id: str, source_id: str) -> str:
    return hashlib.sha256(f"{rule_id}\x1f{source_id}".encode()).hexdigest()[:32]


class AlertRouter(TransactionalProcessor):
    """Matches source records against rules; emits one candidate alert per (rule, record)."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0") -> None:
        self.by_topic = {topic(name, kafka): spec for name, spec in SOURCES.items()}
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-alert-router",
                         instance_id=instance_id, inputs=list(self.by_topic))
        self.t_candidates = topic("alerts.candidates", kafka)
        self.t_dlq = topic("alerts.dlq", kafka)
        self.rules: dict[str, AlertRule] = {}
        self.side_inputs.append(ConfigSideInput(kafka, topic("alerts.rules", kafka), codec,
                                                self.rules, lambda body, rid, _rec: parse_rule(body, rid)))
        # a CEP pattern's own `alert` block is a rule too, read from the pattern itself, so the
        # pattern and its alert can never disagree
        self.pattern_rules: dict[str, AlertRule] = {}
        self.side_inputs.append(ConfigSideInput(
            kafka, topic("geo.cep-patterns", kafka), codec, self.pattern_rules,
            lambda body, pid, rec: pattern_alert_rule(parse_pattern(body, pid, rec["version"])),
            keep=lambda rule: rule is not None))

    def process(self, msgs: list, batch: Batch) -> None:
        for msg in msgs:
            schema, kind, id_field, label_fields = self.by_topic[msg.topic()]
            try:
                rec = self.codec.decode(msg.value(), schema)
            except ValidationError as exc:
                self.dead_letter(batch, self.t_dlq, msg, "validation", str(exc))
                continue
            if kind == "job" and rec["status"] not in ("successful", "failed", "dismissed"):
                continue  # only a job's end raises alerts
            flat = flatten(rec)
            source_id = f"{rec[id_field]}:{rec['status']}" if kind == "job" else rec[id_field]
            for rule in (*self.rules.values(), *self.pattern_rules.values()):
                if matches(rule, kind, rec, flat):
                    self._candidate(batch, rule, kind, source_id, flat, label_fields)

    def _candidate(self, batch: Batch, rule: AlertRule, kind: str, source_id: str,
                   flat: dict[str, str], label_fields: tuple[str, ...]) -> None:
        labels = {"rule_id": rule.rule_id, "severity": rule.severity, "tenant_id": rule.tenant_id,
                  **{f: flat.get(f, "") for f in label_fields}, **rule.labels}
        alert = {
            "alert_id": alert_id_for(rule.rule_id, source_id),
            "fingerprint": fingerprint(rule.rule_id, labels), "tenant_id": rule.tenant_id,
            "rule_id": rule.rule_id, "severity": rule.severity,
            "title": render(rule.title, flat), "body": render(rule.body, flat),
            "channels": list(rule.channels), "source_id": source_id, "labels": labels,
            "created_ms": now_ms(), "fallback_channel": rule.fallback_channel, "source": kind,
            "suppressed_reason": None, "dedup_window_s": rule.dedup_window_s,
        }
        self.emit(batch, self.t_candidates, rule.tenant_id, "Alert", alert)


class AlertGate(TransactionalProcessor):
    """Noise control per tenant (silences, de-duplication, rate limits), then persist-before-send:
    the alert and one delivery request per channel, in one transaction."""

    changelog_schema = "GateState"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: AlertSettings,
                 sensor: AlertSensor | None = None, instance_id: str = "0") -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-alert-gate",
                         instance_id=instance_id, inputs=[topic("alerts.candidates", kafka)])
        self.settings, self.sensor = settings, sensor or NullSensor()
        self.changelog_topic = topic("alerts.gate-state", kafka)
        self.t_alerts = topic("alerts.alerts", kafka)
        self.t_deliveries = topic("alerts.deliveries", kafka)
        self.silences: dict[str, Silence] = {}
        self.side_inputs.append(ConfigSideInput(
            kafka, topic("alerts.silences", kafka), codec, self.silences,
            lambda body, sid, rec: parse_silence(body, sid, rec["updated_ms"])))

    def state_from_record(self, rec: dict) -> TenantNoiseState:
        return TenantNoiseState(dict(rec["held_until"]), rec["hour"], dict(rec["counts"]),
                                rec["tenant_id"])

    def state_to_record(self, s: TenantNoiseState) -> dict:
        return {"tenant_id": s.tenant_id, "held_until": s.held_until, "hour": s.hour,
                "counts": s.counts}

    def process(self, msgs: list, batch: Batch) -> None:
        for msg in msgs:
            alert = self.codec.decode(msg.value(), "Alert")
            tenant = alert["tenant_id"]
            state = self.state(tenant)
            if state is None:
                state = TenantNoiseState(tenant_id=tenant)
                self.put_state(msg.partition(), tenant, state)
            silences = [s for s in self.silences.values() if s.tenant_id == tenant]
            now = now_ms()
            decision = decide(state, fp=alert["fingerprint"], severity=alert["severity"],
                              labels=alert["labels"], silences=silences, now_ms=now,
                              dedup_window_s=alert["dedup_window_s"],
                              dedup_defaults=self.settings.dedup_s,
                              rate_limits=self.settings.rate_per_hour)
            self.mark_dirty(batch, tenant, state)
            if not decision.allowed:
                self.sensor.suppressed(decision.reason.split(":")[0].split(" ")[0])
                self.emit(batch, self.t_alerts, alert["alert_id"], "Alert",
                          dict(alert, suppressed_reason=decision.reason))
                continue
            self.emit(batch, self.t_alerts, alert["alert_id"], "Alert", alert)
            for channel in alert["channels"]:
                self.emit(batch, self.t_deliveries, alert["alert_id"], "DeliveryAttempt",
                          delivery_request(alert, channel, now))


def delivery_request(alert: dict, channel: str, now: int, fallback_for: str | None = None,
                     action: str = "trigger") -> dict:
    return {"delivery_id": f"{alert['alert_id']}:{channel}", "alert_id": alert["alert_id"],
            "tenant_id": alert["tenant_id"], "channel": channel,
            "fallback_channel": None if fallback_for else alert.get("fallback_channel"),
            "fallback_for": fallback_for, "severity": alert["severity"], "action": action,
            "title": alert["title"], "body": alert["body"], "labels": alert["labels"],
            "alert_created_ms": alert["created_ms"], "attempt": 1, "outcome": None,
            "error_class": None, "error_message": None, "first_failure_ms": None,
            "not_before_ms": now, "created_ms": now}


class AlertStatusStage(TransactionalProcessor):
    """Folds alerts and delivery outcomes into one status per alert (its compacted topic is
    also this stage's changelog)."""

    changelog_schema = "AlertStatus"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0") -> None:
        self.t_alerts = topic("alerts.alerts", kafka)
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-alert-status",
                         instance_id=instance_id,
                         inputs=[self.t_alerts, topic("alerts.outcomes", kafka)])
        self.changelog_topic = topic("alerts.status", kafka)

    def state_from_record(self, rec: dict) -> dict:
        return rec

    def state_to_record(self, state: dict) -> dict:
        return state

    @staticmethod
    def _blank(alert_id: str, tenant: str) -> dict:
        return {"alert_id": alert_id, "tenant_id": tenant, "status": "PENDING", "channels": {},
                "attempts": {}, "last_errors": {}, "fallback_of": {}, "reason": None,
                "rule_id": "", "severity": "info", "title": "", "created_ms": 0,
                "delivered_ms": None, "delivered_by": {}, "updated_ms": now_ms()}

    def process(self, msgs: list, batch: Batch) -> None:
        for msg in msgs:
            is_alert = msg.topic() == self.t_alerts
            rec = self.codec.decode(msg.value(), "Alert" if is_alert else "DeliveryAttempt")
            if not is_alert and rec["channel"] == "job-callback":
                continue  # job callbacks share delivery, not alert status (jobs have their own)
            aid = rec["alert_id"]
            st = self.state(aid)
            if st is None:
                st = self._blank(aid, rec["tenant_id"])
                self.put_state(msg.partition(), aid, st)
            if is_alert:
                self._on_alert(st, rec)
            else:
                self._on_outcome(st, rec)
            st["updated_ms"] = now_ms()
            self.mark_dirty(batch, aid, st)

    def _on_alert(self, st: dict, alert: dict) -> None:
        st.update(rule_id=alert["rule_id"], severity=alert["severity"], title=alert["title"],
                  created_ms=alert["created_ms"])
        if alert["suppressed_reason"]:
            st.update(status="SUPPRESSED", reason=alert["suppressed_reason"])
            return
        for ch in alert["channels"]:
            st["channels"].setdefault(ch, "PENDING")
        self._refresh(st)

    def _on_outcome(self, st: dict, out: dict) -> None:
        ch, primary = out["channel"], out["fallback_for"] or out["channel"]
        if out["fallback_for"]:
            st["fallback_of"][out["fallback_for"]] = ch
        if st["channels"].get(ch) == "SENT" and out["outcome"] != "SENT":
            return  # a late report of an earlier failure never un-delivers a channel
        st["channels"][ch] = out["outcome"]
        st["attempts"][ch] = max(st["attempts"].get(ch, 0), out["attempt"])
        if out["error_message"]:
            st["last_errors"][ch] = f"{out['error_class']}: {out['error_message']}"[:500]
        if out["outcome"] == "SENT":
            st["delivered_by"].setdefault(primary, ch)
        self._refresh(st, out["created_ms"])

    @staticmethod
    def _refresh(st: dict, at_ms: int | None = None) -> None:
        if st["status"] in ("SUPPRESSED", "ACKNOWLEDGED", "RESOLVED"):
            return
        st["status"] = overall_status(st["channels"], st["fallback_of"])
        if st["status"] == "SENT" and st["delivered_ms"] is None:
            st["delivered_ms"] = at_ms or now_ms()

