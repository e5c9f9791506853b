"""The compute tier interface. A tier runs one job attempt; it raises TransientError (retry),
PermanentError (DLQ), JobCancelled or JobTimedOut, and reports progress through a callback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from geoflux.errors import JobCancelled, JobTimedOut

__all__ = ["ComputeTier", "JobCancelled", "JobContext", "JobTimedOut"]


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
    """What the job worker uses of a tier; a tier with nothing to do for one of these
    implements it as a no-op, so the worker never asks what a tier has."""

    name: str

    def supports(self, process_id: str) -> bool:
        """Whether this tier can run the process: the one place that says so."""
        ...

    def ensure_schema(self) -> None:
        """Prepares what the tier keeps outside the worker (PostGIS: its results table), before
        the first job; may raise while that service is away (the worker logs it and goes on)."""
        ...

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        """Runs the job; returns its outputs. Must stop promptly once `cancelled()` is true."""
        ...

    def close(self) -> None:
        """Releases what the tier holds (child processes, connections) when the worker stops."""
        ...
