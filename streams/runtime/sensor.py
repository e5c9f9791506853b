"""What stages report, through interfaces; `services.metrics` turns the reports into
Prometheus metrics. Reports of work come after its transaction commits, so counts are of work
that is durable (an aborted batch is re-processed and counted once, when it commits)."""

from __future__ import annotations

from typing import Protocol


class StageSensor(Protocol):
    def dead_lettered(self, stage: str, error_class: str, count: int = 1) -> None:
        """Records set aside on a DLQ (committed)."""

    def skipped(self, topic: str, error_class: str) -> None:
        """A side-input record (geofences, rules, silences, patterns) logged and skipped."""

    def restore_remaining(self, stage: str, partition: int, records: int, seconds: float) -> None:
        """A partition's restore: changelog records and (estimated) seconds left; 0 when done."""

    def recovered(self, stage: str, cause: str) -> None:
        """A transaction given up and rewound: aborted, producer re-created, poison isolated."""


class NullStageSensor:
    def dead_lettered(self, stage, error_class, count=1) -> None:
        pass

    def skipped(self, topic, error_class) -> None:
        pass

    def restore_remaining(self, stage, partition, records, seconds) -> None:
        pass

    def recovered(self, stage, cause) -> None:
        pass


class EvaluatorSensor(Protocol):
    def committed(self, updates: int, events: dict[str, int], dead_lettered: dict[str, int],
                  latencies_s: list[float], batch_s: float) -> None:
        """One committed transaction: location updates applied, events by type, dead letters
        by error class, produced-to-committed latency per update that carried `produced_ms`,
        and the batch's processing time."""


class NullEvaluatorSensor:
    def committed(self, updates, events, dead_lettered, latencies_s, batch_s) -> None:
        pass
