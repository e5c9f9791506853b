"""The alert pipeline reports what happens through this interface; `services.metrics` turns it
into Prometheus metrics. The default does nothing, so the core needs no metrics library."""

from __future__ import annotations

from typing import Protocol


class AlertSensor(Protocol):
    def delivered(self, severity: str, channel: str, seconds_since_created: float) -> None: ...

    def attempt(self, channel: str, outcome: str, error_class: str | None) -> None: ...

    def suppressed(self, reason: str) -> None: ...

    def pending(self, count: int) -> None: ...


class NullSensor:
    def delivered(self, severity, channel, seconds_since_created) -> None:
        pass

    def attempt(self, channel, outcome, error_class) -> None:
        pass

    def suppressed(self, reason) -> None:
        pass

    def pending(self, count) -> None:
        pass
