"""What the job worker reports for metrics; `services.metrics` turns it into Prometheus
counters (`geoflux_dlq_records_total{stage, error_class}`). Counted when the record is written
to the DLQ, so a worker killed before its commit counts a repeat once more."""

from __future__ import annotations

from typing import Protocol


class DlqSensor(Protocol):
    def dead_lettered(self, stage: str, error_class: str) -> None: ...


class NullDlqSensor:
    def dead_lettered(self, stage: str, error_class: str) -> None:
        pass
