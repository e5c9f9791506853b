"""The in-process tier: shapely in child processes of the worker, so a dismissed or timed-out
job is really stopped (its child is killed) and a crash in native code cannot take the worker
down. The children are a warm pool (connectors/compute/pool.py), one per job slot, started
from a forkserver that has imported the process code once. The process code itself is passed
in by the caller."""

from __future__ import annotations

from typing import Callable

from connectors.compute.base import JobContext
from connectors.compute.pool import ProcessPool


class InProcessTier:
    name = "inprocess"

    def __init__(self, target: Callable[[str, dict, Callable[[int], None]], dict], slots: int = 4,
                 max_jobs_per_child: int = 1000) -> None:
        self.pool = ProcessPool(target, slots, max_jobs_per_child)

    def supports(self, process_id: str) -> bool:
        return True  # the target runs every process of the catalogue

    def ensure_schema(self) -> None:
        pass

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        return await self.pool.run(ctx, inputs, progress, cancelled)

    def close(self) -> None:
        self.pool.close()
