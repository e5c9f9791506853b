"""Per-tenant job quotas: limits from settings, and the decision for one submission. Pure.

Usage is counted from the followed `jobs.status` view (streams/jobs/status_view.py), so every
API instance sees the same numbers: jobs not finished (accepted or running) for the
concurrency limit, jobs created in the last 60 s for the rate. A limit of None is unlimited.

Edges: an input of exactly `max_input_bytes` is admitted; a submission is refused once the
jobs in flight, or those created less than 60 s ago, have reached their limit (so a limit of 0
refuses every one). A rate refusal's `retry_after_s` is when the oldest recent job leaves the
window, in whole seconds rounded up and at least 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from geoflux.errors import ValidationError

LIMITS = ("concurrent_jobs", "submissions_per_minute", "max_input_bytes")
WINDOW_MS = 60_000


@dataclass(frozen=True, slots=True)
class Quota:
    concurrent_jobs: int | None = None
    submissions_per_minute: int | None = None
    max_input_bytes: int | None = None

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in LIMITS}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    status: int = 200  # 429 over a rate or concurrency limit; 413 input too large
    rule: str | None = None
    reason: str | None = None
    retry_after_s: int | None = None


def parse_quotas(raw: dict) -> dict[str, Quota]:
    out = {}
    for tenant, limits in (raw or {}).items():
        if not isinstance(limits, dict) or set(limits) - set(LIMITS):
            raise ValidationError(f"quotas for {tenant!r} take only {', '.join(LIMITS)}")
        for k, v in limits.items():
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValidationError(f"quota {tenant}.{k} must be a non-negative integer or null")
        out[tenant] = Quota(**limits)
    return out


def quota_for(quotas: dict[str, Quota], tenant: str) -> Quota:
    return quotas.get(tenant) or quotas.get("*") or Quota()


def usage(active: int, created_ms: Iterable[int], now_ms: int) -> dict:
    """A tenant's usage: `active`, its jobs accepted or running; `created_ms`, creation times
    of its recent jobs (those older than the window are ignored)."""
    recent = sorted(c for c in created_ms if now_ms - c < WINDOW_MS)
    return {"concurrent_jobs": active, "submissions_last_minute": len(recent),
            "oldest_recent_ms": recent[0] if recent else None}


def decide(q: Quota, use: dict, input_bytes: int, now_ms: int, concurrent_retry_after_s: int) -> Decision:
    if q.max_input_bytes is not None and input_bytes > q.max_input_bytes:
        # no point retrying the same request: 413, not 429
        return Decision(False, 413, "max_input_bytes",
                        f"inputs are {input_bytes} bytes; this tenant's limit is {q.max_input_bytes}")
    if q.submissions_per_minute is not None and use["submissions_last_minute"] >= q.submissions_per_minute:
        oldest = use["oldest_recent_ms"] or now_ms
        wait = max(1, -(-(oldest + WINDOW_MS - now_ms) // 1000))
        return Decision(False, 429, "submissions_per_minute",
                        f"{use['submissions_last_minute']} jobs submitted in the last minute; "
                        f"this tenant's limit is {q.submissions_per_minute}", int(wait))
    if q.concurrent_jobs is not None and use["concurrent_jobs"] >= q.concurrent_jobs:
        return Decision(False, 429, "concurrent_jobs",
                        f"{use['concurrent_jobs']} jobs queued or running; this tenant's limit is "
                        f"{q.concurrent_jobs}", concurrent_retry_after_s)
    return Decision(True)
