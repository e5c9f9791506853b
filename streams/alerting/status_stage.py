"""The alert status stage: folds alerts, delivery outcomes and lifecycle records into each
alert's status (`alerts.status`, compacted: its changelog), and writes the deliveries its
escalation timers and resolutions call for."""

from __future__ import annotations

import structlog

from geoflux.keys import scoped
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.delivery_policy import overall_status
from streams.alerting.escalation import (CLOSED, apply_action, channels_to_tell, escalate, first_due,
                                         parse_policy, policy_for)
from streams.alerting.stages import batch_wait, delivery_request
from streams.runtime.sensor import StageSensor
from streams.runtime.txn_processor import ConfigSideInput, Record, TransactionalProcessor, Txn, now_ms
from streams.state.timers import TIMERS, parse_timer, timer_entry

log = structlog.get_logger("geoflux.alerts")


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
                         poll_timeout_s=batch_wait(batch_wait_s))
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
