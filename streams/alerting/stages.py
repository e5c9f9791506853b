"""The transactional stages of the alert pipeline.

    geo.geofence-events ─┐
    geo.cep-matches ─────┼─ AlertRouterStage ─ alerts.candidates (by tenant) ─ AlertGateStage ─┬─ alerts.alerts
    jobs.status ─────────┘  rules                                          silences  ├─ alerts.deliveries
                                                                                     └─ alerts.lifecycle (source resolves)
    alerts.alerts + alerts.outcomes + alerts.lifecycle ─ AlertStatusStage ─┬─ alerts.status (compacted, its changelog)
                                            escalation policies            └─ alerts.deliveries (escalations, resolutions)

Each stage is a `TransactionalProcessor`: its outputs and offsets commit together, so a crash
never duplicates or loses an alert. An alert is written (PENDING) before any delivery exists.
"""

from __future__ import annotations

import hashlib

import structlog

from geoflux.settings import AlertSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.delivery_policy import overall_status
from streams.alerting.noise import Hold, Silence, TenantNoiseState, decide, fingerprint, parse_silence
from streams.alerting.escalation import (CLOSED, apply_action, channels_to_tell, escalate, first_due,
                                        parse_policy, policy_for)
from streams.alerting.rules import (AlertRule, flatten, matches, parse_rule, render, resolve_key,
                                    resolves)
from streams.alerting.sensor import AlertSensor, NullSensor
from streams.cep.patterns import parse_pattern, pattern_alert_rule
from geoflux.keys import scoped
from streams.runtime.sensor import StageSensor
from streams.state.timers import TIMERS, due_keys, next_due, parse_timer, timer_entry
from streams.runtime.txn_processor import Txn, ConfigSideInput, Record, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.alerts")

# source topic -> (schema, source kind, id field, label fields)
SOURCES = {
    "geo.geofence-events": ("GeofenceEvent", "geofence", "event_id",
                            ("entity_id", "geofence_id", "event_type")),
    "geo.cep-matches": ("CepMatch", "cep", "match_id", ("pattern_id", "key")),
    "jobs.status": ("JobStatus", "job", "job_id", ("job_id", "process_id", "status")),
}


MAX_OPEN_PER_KEY = 50  # open alerts one resolving record can resolve; older ones need a person
# The gate's state keys: a tenant's own state under its id, each fingerprint's de-duplication
# window under hold_key(). A hold is a GateState record with hour HOLD_HOUR and one held_until
# entry, so the changelog keeps one schema; its timer deletes it once the window is over.
HOLD_HOUR = -1
HOLD_SWEEP_S = 1.0  # how often windows that are over are deleted (a late one is ignored anyway)


def hold_key(tenant_id: str, fp: str) -> str:
    return scoped(tenant_id, f"hold:{fp}")


def _batch_wait(given: float | None) -> float:
    return AlertSettings().batch_wait_s if given is None else given


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
                         poll_timeout_s=_batch_wait(batch_wait_s))
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


class AlertGateStage(TransactionalProcessor):
    """Noise control per tenant (silences, de-duplication, rate limits), then persist-before-send:
    the alert and one delivery request per channel, in one transaction."""

    changelog_schema = "GateState"
    stage = "alert-gate"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: AlertSettings,
                 sensor: AlertSensor | None = None, instance_id: str = "0",
                 stage_sensor: StageSensor | None = None) -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-alert-gate",
                         instance_id=instance_id, inputs={topic("alerts.candidates", kafka): "Alert"},
                         dlq_topic=topic("alerts.dlq", kafka), sensor=stage_sensor,
                         tick_interval_s=HOLD_SWEEP_S, poll_timeout_s=settings.batch_wait_s)
        self.settings, self.sensor = settings, sensor or NullSensor()
        self.changelog_topic = topic("alerts.gate-state", kafka)
        self.t_alerts = topic("alerts.alerts", kafka)
        self.t_deliveries = topic("alerts.deliveries", kafka)
        self.t_lifecycle = topic("alerts.lifecycle", kafka)
        self.silences: dict[str, Silence] = {}
        self.side_inputs.append(ConfigSideInput(
            kafka, topic("alerts.silences", kafka), codec, self.silences,
            lambda body, sid, rec: parse_silence(body, sid, rec["updated_ms"])))

    def state_from_record(self, rec: dict) -> TenantNoiseState | Hold:
        if rec["hour"] == HOLD_HOUR:
            (fp, until), = rec["held_until"].items()
            return Hold(rec["tenant_id"], fp, until)
        return TenantNoiseState(dict(rec["held_until"]), rec["hour"], dict(rec["counts"]),
                                rec["tenant_id"], {k: list(v) for k, v in rec["open"].items()})

    def state_to_record(self, s: TenantNoiseState | Hold) -> dict:
        if isinstance(s, Hold):
            return {"tenant_id": s.tenant_id, "held_until": {s.fp: s.until_ms}, "hour": HOLD_HOUR,
                    "counts": {}, "open": {}}
        return {"tenant_id": s.tenant_id, "held_until": s.held_until, "hour": s.hour,
                "counts": s.counts, "open": s.open}

    def index_keys(self, key: str, state: TenantNoiseState | Hold):
        return (timer_entry(state.until_ms, key),) if isinstance(state, Hold) else ()

    def wants_tick(self) -> bool:
        now = now_ms()
        return any((due := next_due(self.table(p).index(TIMERS))) is not None and due <= now
                   for p in self.ready)

    def tick(self, txn: Txn) -> None:
        """Deletes holds whose windows are over, so the store keeps only live windows."""
        now = now_ms()
        for p in sorted(self.ready):
            for key in due_keys(self.table(p).index(TIMERS), now):
                hold = self.state(key, p)
                if isinstance(hold, Hold) and hold.until_ms <= now:  # not renewed meanwhile
                    self.delete_state(txn, key, p)

    def _put_hold(self, txn: Txn, partition: int, hold: Hold) -> None:
        key = hold_key(hold.tenant_id, hold.fp)
        self.put_state(partition, key, hold)
        self.mark_dirty(txn, key, hold)

    def _move_windows(self, txn: Txn, partition: int, state: TenantNoiseState, now: int) -> None:
        """Windows an earlier version kept in the tenant's own record become holds, once."""
        for fp, until in state.held_until.items():
            if until > now:
                self._put_hold(txn, partition, Hold(state.tenant_id, fp, until))
        state.held_until = {}

    def process(self, records: list[Record], txn: Txn) -> None:
        for r in records:
            alert = r.rec
            tenant = alert["tenant_id"]
            state = self.state(tenant, r.partition())
            if state is None:
                state = TenantNoiseState(tenant_id=tenant)
                self.put_state(r.partition(), tenant, state)
            now = now_ms()
            if alert["action"] == "resolve":
                for aid in state.open.pop(alert["resolve_key"], []):
                    self.emit(txn, self.t_lifecycle, aid, "AlertAction", {
                        "action_id": f"{aid}:resolve:{alert['source_id']}", "alert_id": aid,
                        "tenant_id": tenant, "action": "RESOLVE", "by": f"source:{alert['source_id']}",
                        "origin": "source", "note": None, "at_ms": now})
                self.mark_dirty(txn, tenant, state)
                continue
            if state.held_until:
                self._move_windows(txn, r.partition(), state, now)
            silences = [s for s in self.silences.values() if s.tenant_id == tenant]
            fp = alert["fingerprint"]
            hold = self.state(hold_key(tenant, fp), r.partition())
            holds = {} if hold is None else {fp: hold.until_ms}
            decision = decide(state, fp=fp, severity=alert["severity"],
                              labels=alert["labels"], silences=silences, now_ms=now,
                              dedup_window_s=alert["dedup_window_s"],
                              dedup_defaults=self.settings.dedup_s,
                              rate_limits=self.settings.rate_per_hour, holds=holds)
            self.mark_dirty(txn, tenant, state)
            if fp in holds and (hold is None or hold.until_ms != holds[fp]):
                self._put_hold(txn, r.partition(), Hold(tenant, fp, holds[fp]))
            if not decision.allowed:
                self.sensor.suppressed(decision.reason.split(":")[0].split(" ")[0])
                self.emit(txn, self.t_alerts, alert["alert_id"], "Alert",
                          dict(alert, suppressed_reason=decision.reason))
                continue
            self.emit(txn, self.t_alerts, alert["alert_id"], "Alert", alert)
            if alert["resolve_key"]:
                held = state.open.setdefault(alert["resolve_key"], [])
                held[:] = [*held, alert["alert_id"]][-MAX_OPEN_PER_KEY:]
            for channel in alert["channels"]:
                self.emit(txn, self.t_deliveries, alert["alert_id"], "DeliveryAttempt",
                          delivery_request(alert, channel, now))


def delivery_request(alert: dict, channel: str, now: int, fallback_for: str | None = None,
                     action: str = "trigger", purpose: str = "") -> dict:
    """`purpose` tells apart deliveries of one alert to one channel (an escalation level, the
    resolution): it is part of the delivery id, the receiver's idempotency key."""
    suffix = f":{purpose}" if purpose else ""
    return {"delivery_id": f"{alert['alert_id']}:{channel}{suffix}", "alert_id": alert["alert_id"],
            "tenant_id": alert["tenant_id"], "channel": channel,
            "fallback_channel": None if fallback_for else alert.get("fallback_channel"),
            "fallback_for": fallback_for, "severity": alert["severity"], "action": action,
            "title": alert["title"], "body": alert["body"], "labels": alert["labels"],
            "alert_created_ms": alert["created_ms"], "attempt": 1, "outcome": None,
            "error_class": None, "error_message": None, "first_failure_ms": None,
            "not_before_ms": now, "created_ms": now}


class AlertStatusStage(TransactionalProcessor):
    """Folds alerts, delivery outcomes and lifecycle actions into one status per alert (its
    compacted topic is also this stage's changelog), and runs the alert's escalation timer,
    which lives in that status: deliveries it causes commit in the same transaction as the
    status that says they happened, so a level never fires twice or not at all."""

    changelog_schema = "AlertStatus"
    stage = "alert-status"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, instance_id: str = "0",
                 tick_interval_s: float = 0.5, sensor: StageSensor | None = None,
                 batch_wait_s: float | None = None) -> None:
        self.t_alerts = topic("alerts.alerts", kafka)
        self.t_lifecycle = topic("alerts.lifecycle", kafka)
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-alert-status",
                         instance_id=instance_id, tick_interval_s=tick_interval_s,
                         inputs={self.t_alerts: "Alert", topic("alerts.outcomes", kafka): "DeliveryAttempt",
                                 self.t_lifecycle: "AlertAction"},
                         dlq_topic=topic("alerts.dlq", kafka), sensor=sensor,
                         poll_timeout_s=_batch_wait(batch_wait_s))
        self.changelog_topic = topic("alerts.status", kafka)
        self.t_deliveries = topic("alerts.deliveries", kafka)
        self.policies: dict = {}
        self.side_inputs.append(ConfigSideInput(kafka, topic("alerts.escalations", kafka), codec,
                                                self.policies, lambda body, pid, _rec: parse_policy(body, pid)))
        self.timers: dict[str, tuple[int, int]] = {}  # alert id -> (partition, next escalation)

    def state_from_record(self, rec: dict) -> dict:
        return rec

    def state_to_record(self, state: dict) -> dict:
        return state

    def index_keys(self, key: str, state: dict):
        due = state["next_escalation_ms"]
        return () if due is None else (timer_entry(due, key),)

    def on_restored(self, partition: int) -> None:
        for entry in self.table(partition).index(TIMERS):
            due, aid = parse_timer(entry)
            self.timers[aid] = (partition, due)

    def on_revoked(self, partitions: set[int]) -> None:
        self.timers = {a: t for a, t in self.timers.items() if t[0] not in partitions}

    def on_rewind(self) -> None:
        self.timers.clear()
        for p in self.ready:
            self.on_restored(p)

    @staticmethod
    def _blank(alert_id: str, tenant: str) -> dict:
        return {"alert_id": alert_id, "tenant_id": tenant, "status": "PENDING", "channels": {},
                "attempts": {}, "last_errors": {}, "fallback_of": {}, "reason": None,
                "rule_id": "", "severity": "info", "title": "", "created_ms": 0,
                "delivered_ms": None, "delivered_by": {}, "updated_ms": now_ms(),
                "escalation_policy": None, "escalation_level": 0, "next_escalation_ms": None,
                "acknowledged_ms": None, "acknowledged_by": None, "resolved_ms": None,
                "resolved_by": None, "resolution": {}, "body": "", "labels": {}, "repeats": 0,
                "last_repeat_ms": None}

    def process(self, records: list[Record], txn: Txn) -> None:
        for r in records:
            schema = self.input_schemas[r.topic()]
            rec = r.rec
            if schema == "DeliveryAttempt" and rec["channel"] == "job-callback":
                continue  # job callbacks share delivery, not alert status (jobs have their own)
            aid = rec["alert_id"]
            st = self.state(aid, r.partition())
            if st is None:
                st = self._blank(aid, rec["tenant_id"])
                self.put_state(r.partition(), aid, st)
            if schema == "Alert":
                self._on_alert(st, rec)
            elif schema == "AlertAction":
                if apply_action(st, rec):
                    self._tell_resolution(txn, st)
            elif rec["action"] == "resolve":
                st["resolution"][rec["channel"]] = rec["outcome"]
            else:
                self._on_outcome(st, rec)
            self._track_timer(st, r.partition())
            st["updated_ms"] = now_ms()
            self.mark_dirty(txn, aid, st)

    def _on_alert(self, st: dict, alert: dict) -> None:
        """The alert's record. Status only moves forward: a later candidate of an alert already
        recorded (the same rule and source record, read again) that noise control suppressed
        is counted as a repeat; it never turns a delivered alert into a suppressed one or
        moves its creation time (which would stop its escalation)."""
        seen = st["created_ms"] != 0
        if seen and alert["suppressed_reason"]:
            st["repeats"] = st.get("repeats", 0) + 1
            st["last_repeat_ms"] = now_ms()
            return
        if not seen or st["status"] == "SUPPRESSED":
            st.update(rule_id=alert["rule_id"], severity=alert["severity"], title=alert["title"],
                      created_ms=alert["created_ms"], body=alert["body"], labels=alert["labels"])
        if alert["suppressed_reason"]:
            st.update(status="SUPPRESSED", reason=alert["suppressed_reason"])
            return
        if st["status"] == "SUPPRESSED":  # suppressed before, let through now: it is delivered
            st.update(status="PENDING", reason=None)
        for ch in alert["channels"]:
            st["channels"].setdefault(ch, "PENDING")
        if st["escalation_level"] == 0 and st["status"] not in CLOSED and st["next_escalation_ms"] is None:
            policy = policy_for(self.policies, alert["tenant_id"], alert["severity"],
                                alert["escalation_policy"])
            st["escalation_policy"] = policy.policy_id if policy else None
            st["next_escalation_ms"] = first_due(policy, st["created_ms"])
        self._refresh(st)

    def _track_timer(self, st: dict, partition: int) -> None:
        if st["next_escalation_ms"] is None:
            self.timers.pop(st["alert_id"], None)
        else:
            self.timers[st["alert_id"]] = (partition, st["next_escalation_ms"])

    @staticmethod
    def _notification(st: dict) -> dict:
        """What an escalation or resolution delivery carries: the alert as its status knows it."""
        return {"alert_id": st["alert_id"], "tenant_id": st["tenant_id"], "severity": st["severity"],
                "title": st["title"], "body": st["body"], "labels": st["labels"],
                "created_ms": st["created_ms"], "fallback_channel": None}

    def _tell_resolution(self, txn: Txn, st: dict) -> None:
        alert, now = self._notification(st), now_ms()
        alert["body"] = f"resolved by {st['resolved_by']}"
        for ch in channels_to_tell(st):
            st["resolution"][ch] = "PENDING"
            self.emit(txn, self.t_deliveries, st["alert_id"], "DeliveryAttempt",
                      delivery_request(alert, ch, now, action="resolve", purpose="resolve"))

    def wants_tick(self) -> bool:
        return bool(self.timers)

    def tick(self, txn: Txn) -> None:
        now = now_ms()
        for aid, (partition, _due) in [(a, t) for a, t in self.timers.items() if t[1] <= now]:
            st = self.state(aid, partition)
            if st is None:
                self.timers.pop(aid, None)
                continue
            policy = self.policies.get(scoped(st["tenant_id"], st["escalation_policy"] or ""))
            levels = escalate(st, policy, now)
            alert = self._notification(st)
            for n, level in enumerate(levels, start=st["escalation_level"] - len(levels) + 1):
                alert["severity"] = st["severity"]
                for ch in level.channels:
                    st["channels"].setdefault(ch, "PENDING")
                    self.emit(txn, self.t_deliveries, aid, "DeliveryAttempt",
                              delivery_request(alert, ch, now, purpose=f"esc{n}"))
            if levels:
                log.info("alert escalated", alert_id=aid, level=st["escalation_level"],
                         policy=st["escalation_policy"])
                self._refresh(st)
            self._track_timer(st, partition)
            st["updated_ms"] = now
            self.mark_dirty(txn, aid, st)

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
        if st["status"] in CLOSED:
            return
        st["status"] = overall_status(st["channels"], st["fallback_of"])
        if st["status"] == "SENT" and st["delivered_ms"] is None:
            st["delivered_ms"] = at_ms or now_ms()
