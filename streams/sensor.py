"""The evaluator reports what it committed through this interface; `services.metrics` turns it
into Prometheus metrics. Calls happen after the transaction commits, so counts are of work
that is durable (an aborted batch is re-processed and counted once, when it commits)."""

from __future__ import annotations

from typing import Protocol


class EvaluatorSensor(Protocol):
    def committed(self, updates: int, events: dict[str, int], dead_lettered: dict[str, int],
                  latencies_s: list[float], batch_s: float) -> None:
        """One committed transaction: location updates applied, events by type, dead letters
        by error class, produced-to-committed latency per update that carried `produced_ms`,
        and the batch's processing time."""


class NullEvaluatorSensor:
    def committed(self, updates, events, dead_lettered, latencies_s, batch_s) -> None:
        pass
