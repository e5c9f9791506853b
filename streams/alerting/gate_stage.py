"""The alert gate: noise control per tenant (silences, de-duplication windows, rate limits),
then persist-before-send: the alert and one delivery request per channel in one transaction.
Resolve candidates become RESOLVE actions for the alerts still open under their key."""

from __future__ import annotations

from geoflux.keys import scoped
from geoflux.settings import AlertSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.noise import Hold, Silence, TenantNoiseState, decide, parse_silence
from streams.alerting.sensor import AlertSensor, NullSensor
from streams.alerting.stages import delivery_request
from streams.runtime.sensor import StageSensor
from streams.runtime.txn_processor import ConfigSideInput, Record, TransactionalProcessor, Txn, now_ms
from streams.state.timers import TIMERS, due_keys, next_due, timer_entry

MAX_OPEN_PER_KEY = 50  # open alerts one resolving record can resolve; older ones need a person
# The gate's state keys: a tenant's own state under its id, each fingerprint's de-duplication
# window under hold_key(). A hold is a GateState record with hour HOLD_HOUR and one held_until
# entry, so the changelog keeps one schema; its timer deletes it once the window is over.
HOLD_HOUR = -1
HOLD_SWEEP_S = 1.0  # how often windows that are over are deleted (a late one is ignored anyway)


def hold_key(tenant_id: str, fp: str) -> str:
    return scoped(tenant_id, f"hold:{fp}")


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
