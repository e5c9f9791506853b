"""A tier that runs nothing and answers at once: the job pipeline (API, Kafka, worker, status)
without its compute, for measuring what the pipeline itself can carry
(benchmarks/jobs_throughput.py's ceiling). The worker has it only when `GEOFLUX_JOBS_TIERS`
routes a process to "noop"."""

from __future__ import annotations

from typing import Callable

from connectors.compute.base import JobContext


class NoopTier:
    name = "noop"

    def supports(self, process_id: str) -> bool:
        return True

    def ensure_schema(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        return {"noop": True}
