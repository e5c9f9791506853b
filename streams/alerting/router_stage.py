"""The alert router: matches source records (geofence events, CEP matches, job ends) against
the tenants' rules and the CEP patterns' own alert blocks, and writes one candidate alert per
(rule, record) to `alerts.candidates`, keyed by tenant; a record that resolves a rule's open
alerts is written as a resolve candidate for the gate to act on."""

from __future__ import annotations

import hashlib

from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.noise import fingerprint
from streams.alerting.rules import AlertRule, flatten, matches, parse_rule, render, resolve_key, resolves
from streams.alerting.stages import batch_wait
from streams.cep.patterns import parse_pattern, pattern_alert_rule
from streams.runtime.sensor import StageSensor
from streams.runtime.txn_processor import ConfigSideInput, Record, TransactionalProcessor, Txn, now_ms

# source topic -> (schema, source kind, id field, label fields)
SOURCES = {
    "geo.geofence-events": ("GeofenceEvent", "geofence", "event_id",
                            ("entity_id", "geofence_id", "event_type")),
    "geo.cep-matches": ("CepMatch", "cep", "match_id", ("pattern_id", "key")),
    "jobs.status": ("JobStatus", "job", "job_id", ("job_id", "process_id", "status")),
}


def alert_id_for(tenant_id: str, rule_id: str, source_id: str) -> str:
    """Rule ids are per tenant, so the tenant is part of the alert's identity."""
    return hashlib.sha256(f"{tenant_id}\x1f{rule_id}\x1f{source_id}".encode()).hexdigest()[:32]


class AlertRouterStage(TransactionalProcessor):
    """Matches source records against rules; emits one candidate alert per (rule, record)."""

    stage = "alert-router"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0",
                 sensor: StageSensor | None = None, batch_wait_s: float | None = None) -> None:
        self.by_topic = {topic(name, kafka): spec for name, spec in SOURCES.items()}
        self.t_dlq = topic("alerts.dlq", kafka)
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-alert-router",
                         instance_id=instance_id, dlq_topic=self.t_dlq, sensor=sensor,
                         inputs={t: spec[0] for t, spec in self.by_topic.items()},
                         poll_timeout_s=batch_wait(batch_wait_s))
        self.t_candidates = topic("alerts.candidates", kafka)
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

    def process(self, records: list[Record], txn: Txn) -> None:
        for r in records:
            _schema, kind, id_field, label_fields = self.by_topic[r.topic()]
            rec = r.rec
            if kind == "job" and rec["status"] not in ("successful", "failed", "dismissed"):
                continue  # only a job's end raises alerts
            flat = flatten(rec)
            source_id = f"{rec[id_field]}:{rec['status']}" if kind == "job" else rec[id_field]
            for rule in (*self.rules.values(), *self.pattern_rules.values()):
                if matches(rule, kind, rec, flat):
                    self._candidate(txn, rule, kind, source_id, flat, label_fields)
                elif resolves(rule, kind, rec, flat):
                    self._resolution(txn, rule, kind, source_id, flat)

    def _candidate(self, txn: Txn, rule: AlertRule, kind: str, source_id: str,
                   flat: dict[str, str], label_fields: tuple[str, ...]) -> None:
        labels = {"rule_id": rule.rule_id, "severity": rule.severity, "tenant_id": rule.tenant_id,
                  **{f: flat.get(f, "") for f in label_fields}, **rule.labels}
        alert = {
            "alert_id": alert_id_for(rule.tenant_id, rule.rule_id, source_id),
            "fingerprint": fingerprint(rule.rule_id, labels), "tenant_id": rule.tenant_id,
            "rule_id": rule.rule_id, "severity": rule.severity,
            "title": render(rule.title, flat), "body": render(rule.body, flat),
            "channels": list(rule.channels), "source_id": source_id, "labels": labels,
            "created_ms": now_ms(), "fallback_channel": rule.fallback_channel, "source": kind,
            "suppressed_reason": None, "dedup_window_s": rule.dedup_window_s,
            "escalation_policy": rule.escalation_policy, "action": "trigger",
            "resolve_key": resolve_key(rule, flat) if rule.resolve_when is not None else None,
        }
        self.emit(txn, self.t_candidates, rule.tenant_id, "Alert", alert)

    def _resolution(self, txn: Txn, rule: AlertRule, kind: str, source_id: str,
                    flat: dict[str, str]) -> None:
        """A record that resolves the rule's open alerts under its resolve key: the gate, which
        knows which alerts are open, turns it into RESOLVE actions."""
        rkey = resolve_key(rule, flat)
        self.emit(txn, self.t_candidates, rule.tenant_id, "Alert", {
            "alert_id": alert_id_for(rule.tenant_id, rule.rule_id, f"resolve:{source_id}"), "fingerprint": rkey,
            "tenant_id": rule.tenant_id, "rule_id": rule.rule_id, "severity": rule.severity,
            "title": "", "body": "", "channels": [], "source_id": source_id, "labels": {},
            "created_ms": now_ms(), "fallback_channel": None, "source": kind,
            "suppressed_reason": None, "dedup_window_s": None, "escalation_policy": None,
            "action": "resolve", "resolve_key": rkey})
