"""The compute tier interface. A tier runs one job attempt; it raises TransientError (retry),
PermanentError (DLQ), JobCancelled or JobTimedOut, and reports progress through a callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from geoflux.errors import GeofluxError


class JobCancelled(GeofluxError):
    error_class = "dismissed"


class JobTimedOut(GeofluxError):
    error_class = "timeout"


@dataclass(frozen=True, slots=True)
class JobContext:
    job_id: str
    idempotency_key: str
    process_id: str
    attempt: int
    timeout_s: float
    tenant_id: str = ""
    # a tier may describe where the job runs (a Batch job id, its log stream): the worker
    # records the line in the job's status message
    report: Callable[[str], None] | None = None


class ComputeTier(Protocol):
    name: str

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        """Runs the job; returns its outputs. Must stop promptly once `cancelled()` is true."""
        ...
