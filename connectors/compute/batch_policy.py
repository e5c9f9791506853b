"""AWS Batch, the pure part: names, the retry strategy, exit codes and what a DescribeJobs
answer (or a "Batch Job State Change" event) means for the job. Pure.

Exit codes of `geoflux batch-run` (the container) and what Batch does with them:

    0   success: outputs and a manifest are in S3
    75  transient (EX_TEMPFAIL: S3 or a dependency unavailable) -> Batch retries the attempt
    2   permanent (bad input, a GEOS error): Batch does not retry, the job fails at once
    *   anything else (a crash, OOM kill 137) -> exit: retrying the same input fails again

Host and spot interruptions ("Host EC2 (instance i-...) terminated.") are retried by Batch;
the list ends with an explicit catch-all EXIT so nothing is retried by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXIT_OK = 0
EXIT_PERMANENT = 2
EXIT_TRANSIENT = 75
IN_PROGRESS = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
PROGRESS = {"SUBMITTED": 5, "PENDING": 10, "RUNNABLE": 15, "STARTING": 25, "RUNNING": 50}
TIMEOUT_REASON = "Job attempt duration exceeded timeout"
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")


def job_name(job_id: str, attempt: int) -> str:
    """One Batch job per geoflux attempt: the name is the reconciliation key (ListJobs
    JOB_NAME filter), so a repeated submit of the same attempt finds the first one."""
    return f"geoflux-{_NAME_OK.sub('-', job_id)}-a{attempt}"[:128]


def job_id_from_name(name: str) -> str | None:
    m = re.fullmatch(r"geoflux-(.+)-a\d+", name or "")
    return m.group(1) if m else None


def s3_keys(prefix: str, job_id: str) -> dict[str, str]:
    base = f"{prefix.strip('/')}/{job_id}" if prefix.strip("/") else job_id
    return {"inputs": f"{base}/inputs.json", "outputs": f"{base}/outputs/result.json",
            "manifest": f"{base}/outputs/manifest.json"}


def retry_strategy(attempts: int) -> dict:
    return {"attempts": max(1, min(int(attempts), 10)), "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},  # spot reclaim, host terminated
        {"onReason": "CannotPullContainerError*", "action": "RETRY"},  # registry hiccup
        {"onExitCode": str(EXIT_TRANSIENT), "action": "RETRY"},  # our transient exit
        {"onReason": "*", "action": "EXIT"},  # everything else: an application error
    ]}


def attempt_timeout_s(job_timeout_s: float) -> int:
    return max(60, int(job_timeout_s))  # Batch's minimum attempt duration is 60 s


def tags(job_id: str, idempotency_key: str, tenant_id: str | None = None) -> dict[str, str]:
    t = {"geoflux:job_id": job_id, "geoflux:idempotency_key": idempotency_key[:256]}
    if tenant_id:
        t["geoflux:tenant_id"] = tenant_id
    return t


def classify_exit(exit_code: int | None, reason: str | None) -> str:
    """`ok`, `transient`, `permanent` or `timeout` for a finished attempt."""
    reason = reason or ""
    if TIMEOUT_REASON.lower() in reason.lower():
        return "timeout"
    if exit_code == EXIT_OK:
        return "ok"
    if exit_code == EXIT_TRANSIENT or reason.startswith(("Host EC2", "CannotPullContainerError")):
        return "transient"
    if exit_code is None:
        # never started a container: capacity, an image that vanished, a cancelled job
        return "transient"
    return "permanent"


@dataclass(frozen=True, slots=True)
class BatchState:
    batch_job_id: str
    job_name: str
    status: str
    reason: str | None
    exit_code: int | None
    log_stream: str | None
    image: str | None
    attempts: int
    verdict: str  # running | ok | transient | permanent | timeout

    @property
    def finished(self) -> bool:
        return self.verdict != "running"

    @property
    def progress(self) -> int:
        return PROGRESS.get(self.status, 0)


def _container(job: dict) -> dict:
    attempts = job.get("attempts") or []
    last = (attempts[-1].get("container") or {}) if attempts else {}
    return {**last, **{k: v for k, v in (job.get("container") or {}).items() if v is not None}}


def read_job(job: dict) -> BatchState:
    """A DescribeJobs `jobs[]` item, or the `detail` of an EventBridge "Batch Job State Change"
    event (the same shape), as our state and verdict."""
    status = job.get("status", "SUBMITTED")
    cont = _container(job)
    attempts = job.get("attempts") or []
    last_reason = (attempts[-1].get("statusReason") if attempts else None) or cont.get("reason")
    reason = job.get("statusReason") or last_reason
    exit_code = cont.get("exitCode")
    if status in IN_PROGRESS:
        verdict = "running"
    elif status == "SUCCEEDED":
        verdict = "ok"
    else:
        verdict = classify_exit(exit_code, last_reason or reason)
        if verdict == "ok":  # FAILED with exit 0: a sidecar or the platform failed it
            verdict = "transient"
    return BatchState(job.get("jobId", ""), job.get("jobName", ""), status, reason, exit_code,
                      cont.get("logStreamName"), cont.get("image"), len(attempts), verdict)


def state_change_detail(message: dict) -> dict | None:
    """The job out of an EventBridge event (as SNS delivers it), or None if it is not one."""
    if message.get("source") == "aws.batch" and message.get("detail-type") == "Batch Job State Change":
        detail = message.get("detail")
        return detail if isinstance(detail, dict) and detail.get("jobId") else None
    return None
