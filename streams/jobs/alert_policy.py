"""Which job alerts exist, how severe, where they go, and what they say. Pure: no I/O.

Kinds (seed Part 3.2): `failed` (a permanent error), `timed-out`, `retries-exhausted`
(transient errors until the attempts ran out), all three read from the job's DLQ record, and
`sla-breach` (queued longer than its process's limit). Severity follows the seed's
`DetermineSeverity`: high-priority jobs are critical; permanent errors are "error" (our
`high`); transient failures that will retry are `warning`.

Fingerprint and alert id depend only on the job and the kind, so every repeat (a DLQ record
written twice after a crash, a stage replay) is the same alert and the gate drops it.
"""

from __future__ import annotations

import hashlib

KINDS = ("failed", "timed-out", "retries-exhausted", "sla-breach")
TITLES = {"failed": "Geoprocessing job failed: {process_id}",
          "timed-out": "Geoprocessing job timed out: {process_id}",
          "retries-exhausted": "Geoprocessing job retries exhausted: {process_id}",
          "sla-breach": "Geoprocessing job queued past its SLA: {process_id}"}


def kind_for(error_class: str) -> str:
    if error_class == "timeout":
        return "timed-out"
    if error_class == "transient":
        return "retries-exhausted"
    return "failed"


def determine_severity(priority: int, error_class: str | None, will_retry: bool = False,
                       critical_priority: int = 8) -> str:
    if priority >= critical_priority:
        return "critical"  # high-priority jobs failing
    if error_class == "transient" and will_retry:
        return "warning"  # a transient failure that will retry
    return "high"  # permanent errors, timeouts, exhausted retries, a breached SLA


def fingerprint(job_id: str, kind: str) -> str:
    return f"geoprocessing:job:{job_id}:{kind}"


def alert_id(job_id: str, kind: str) -> str:
    return hashlib.sha256(fingerprint(job_id, kind).encode()).hexdigest()[:32]


def channels_for(config: dict[str, dict[str, list[str]]], tenant: str, severity: str) -> list[str]:
    per_tenant = config.get(tenant) if tenant in config else config.get("*", {})
    return list((per_tenant or {}).get(severity, []))


def sla_limit_s(process_id: str, per_process: dict[str, float], default_s: float) -> float:
    return float(per_process.get(process_id, default_s))


def sla_breached(status: str, started_ms: int | None, created_ms: int, limit_s: float, now_ms: int) -> bool:
    """Still queued (accepted, not started) for longer than the limit: exactly at it is not a breach."""
    return status == "accepted" and started_ms is None and now_ms - created_ms > limit_s * 1000


def job_alert(kind: str, job: dict, *, severity: str, channels: list[str], now_ms: int,
              error_class: str = "", error: str = "", retry_count: int = 0, duration_ms: int = 0,
              fallback_channel: str | None = None, dedup_window_s: float | None = None) -> dict:
    """An `Alert` record (schemas/avro/Alert.avsc) for `alerts.candidates`. `job` carries
    job_id, tenant_id, process_id, priority and optionally tier."""
    labels = {"job_id": job["job_id"], "process_id": job["process_id"], "tenant_id": job["tenant_id"],
              "kind": kind, "severity": severity, "priority": str(job.get("priority", 5)),
              "error_class": error_class, "error_message": error[:1000],
              "retry_count": str(retry_count), "duration_ms": str(duration_ms),
              "tier": job.get("tier") or "", "rule_id": f"job-{kind}"}
    if kind == "sla-breach":
        body = (f"Job {job['job_id']} ({job['process_id']}, priority {job.get('priority', 5)}) has been "
                f"queued for {duration_ms / 1000:.0f} s")
    else:
        body = (f"Job '{job['process_id']}' ({job['job_id']}) failed after {retry_count} retry "
                f"attempt(s) in {duration_ms / 1000:.1f} s: {error_class}: {error}")[:4000]
    return {"alert_id": alert_id(job["job_id"], kind), "fingerprint": fingerprint(job["job_id"], kind),
            "tenant_id": job["tenant_id"], "rule_id": f"job-{kind}", "severity": severity,
            "title": TITLES[kind].format(process_id=job["process_id"]), "body": body,
            "channels": channels, "source_id": f"{job['job_id']}:{kind}", "labels": labels,
            "created_ms": now_ms, "fallback_channel": fallback_channel, "source": "job",
            "suppressed_reason": None, "dedup_window_s": dedup_window_s, "escalation_policy": None,
            "action": "trigger", "resolve_key": None}
