"""The job-alert stage: jobs raise alerts through the alert pipeline.

    jobs.status ─┐                                   ┌─ alerts.candidates (the AlertGateStage's input)
    jobs.dlq ────┴─ JobAlertStage (transactional) ───┤
                                                     └─ jobs.alert-state (changelog)

- A DLQ record is a job that failed for good: `failed`, `timed-out` or `retries-exhausted`
  by its error class, with the seed's annotations (job id, process, tenant, error, retry
  count, duration) and severity from priority and error class (alert_policy.py).
- A job still queued (`accepted`, never started) past its process's limit raises
  `sla-breach`, once: the fact is kept in the changelog, so a restart does not repeat it.
- Channels come from `GEOFLUX_JOB_ALERTS_CHANNELS` per tenant and severity; a tenant with
  none configured raises nothing. The gate de-duplicates on the fingerprint (job + kind).

The alert router's own `"source": "job"` rules keep working beside this (they match the
final status record); this stage is for the alerts a status record alone cannot express.
"""

from __future__ import annotations

import structlog

from geoflux.errors import ValidationError
from geoflux.settings import JobAlertSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.jobs import alert_policy as ap
from streams.runtime.sensor import StageSensor
from streams.runtime.txn_processor import Txn, Record, TransactionalProcessor, now_ms

log = structlog.get_logger("geoflux.job-alerts")
OPEN = ("accepted", "running")


class JobAlertStage(TransactionalProcessor):
    changelog_schema = "JobAlertState"
    stage = "job-alerts"

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: JobAlertSettings,
                 instance_id: str = "0", sensor: StageSensor | None = None) -> None:
        self.t_status, self.t_dlq = topic("jobs.status", kafka), topic("jobs.dlq", kafka)
        super().__init__(kafka, codec, group=kafka.topic_prefix + "geoflux-job-alerts",
                         instance_id=instance_id, inputs={self.t_status: "JobStatus", self.t_dlq: "DlqRecord"},
                         dlq_topic=topic("alerts.dlq", kafka), tick_interval_s=settings.tick_interval_s,
                         sensor=sensor)
        self.tombstones_ok = {self.t_status}  # compacted: a tombstone is a job forgotten
        self.s = settings
        self.changelog_topic = topic("jobs.alert-state", kafka)
        self.t_candidates = topic("alerts.candidates", kafka)
        self.raised = 0

    def state_from_record(self, rec: dict) -> dict:
        return dict(rec, raised=list(rec["raised"]))

    def state_to_record(self, state: dict) -> dict:
        return state

    def index_keys(self, key: str, state: dict):
        """When the queue SLA of a still-queued job is due (once raised, never again)."""
        if "sla-breach" in state["raised"] or state["status"] != "accepted" or state["started_ms"]:
            return ()
        limit = ap.sla_limit_s(state["process_id"], self.s.queue_sla_s, self.s.default_queue_sla_s)
        due = state["created_ms"] + int(limit * 1000)
        return (b"t" + f"{due:016d}".encode() + b"\x00" + key.encode(),)

    def process(self, records: list[Record], txn: Txn) -> None:
        for r in records:
            if r.topic() == self.t_status:
                self._on_status(r, txn)
            else:
                self._on_dlq(r, txn)

    def _on_status(self, r: Record, txn: Txn) -> None:
        rec = r.rec
        job_id = rec["job_id"]
        if rec["status"] not in OPEN:
            if self.state(job_id, r.partition()) is not None:
                self.delete_state(txn, job_id, r.partition())
            return
        st = self.state(job_id, r.partition())
        if st is None:
            st = {"job_id": job_id, "tenant_id": rec["tenant_id"], "process_id": rec["process_id"],
                  "priority": rec["priority"], "status": rec["status"], "created_ms": rec["created_ms"],
                  "started_ms": None, "attempt": 0, "tier": None, "raised": []}
            self.put_state(r.partition(), job_id, st)
        st.update(status=rec["status"], started_ms=rec["started_ms"], attempt=rec["attempt"],
                  tier=rec["tier"])
        self.mark_dirty(txn, job_id, st)

    def _on_dlq(self, r: Record, txn: Txn) -> None:
        dlq = r.rec
        try:
            req = self.codec.decode(dlq["original_value"], "JobRequest")
        except ValidationError as exc:
            self.dead_letter(txn, None, r, "validation", f"the DLQ record's request: {exc}")
            return
        kind = ap.kind_for(dlq["error_class"])
        st = self.state(req["job_id"], r.partition()) or {}  # jobs.dlq is keyed like jobs.status
        job = {"job_id": req["job_id"], "tenant_id": req["tenant_id"], "process_id": req["process_id"],
               "priority": req["priority"], "tier": st.get("tier")}
        severity = ap.determine_severity(req["priority"], dlq["error_class"], will_retry=False,
                                         critical_priority=self.s.critical_priority)
        self._raise(txn, kind, job, severity, error_class=dlq["error_class"],
                    error=dlq["error_message"], retry_count=max(0, dlq["attempts"] - 1),
                    duration_ms=max(0, dlq["last_failure_ms"] - req["created_ms"]))

    def _raise(self, txn: Txn, kind: str, job: dict, severity: str, **fields) -> bool:
        channels = ap.channels_for(self.s.channels, job["tenant_id"], severity)
        if not channels:
            return False  # this tenant has not asked for job alerts of this severity
        alert = ap.job_alert(kind, job, severity=severity, channels=channels, now_ms=now_ms(),
                             fallback_channel=self.s.fallback_channel.get(job["tenant_id"]),
                             dedup_window_s=self.s.dedup_window_s, **fields)
        self.emit(txn, self.t_candidates, job["tenant_id"], "Alert", alert)
        self.raised += 1
        log.info("job alert", kind=kind, job_id=job["job_id"], severity=severity)
        return True

    # -- the SLA timer -------------------------------------------------------------------------
    def _due(self, now: int):
        for p in sorted(self.ready):
            for ik in self.table(p).index(b"t"):
                due, _, key = ik[1:].partition(b"\x00")
                if int(due) > now:
                    break
                yield p, key.decode()

    def wants_tick(self) -> bool:
        return next(self._due(now_ms()), None) is not None

    def tick(self, txn: Txn) -> None:
        now = now_ms()
        for p, job_id in list(self._due(now)):
            st = self.state(job_id, p)
            if st is not None and "sla-breach" not in st["raised"]:
                limit = ap.sla_limit_s(st["process_id"], self.s.queue_sla_s, self.s.default_queue_sla_s)
                if ap.sla_breached(st["status"], st["started_ms"], st["created_ms"], limit, now):
                    severity = ap.determine_severity(st["priority"], None,
                                                     critical_priority=self.s.critical_priority)
                    self._raise(txn, "sla-breach", st, severity, error_class="sla",
                                error=f"queued longer than {limit:g} s",
                                retry_count=st["attempt"], duration_ms=now - st["created_ms"])
                    st["raised"].append("sla-breach")  # once per job, even with no channel
                    self.mark_dirty(txn, st["job_id"], st, p)

