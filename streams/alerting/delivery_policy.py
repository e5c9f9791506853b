"""When to try a delivery again, when to stop, and when a channel is too broken to try. Pure.

Seed defaults: 3 primary attempts (backoff 1 s, 2 s between them), then the DLQ, where a
slower schedule makes attempts 4 and 5; then ABANDONED. A per-channel circuit breaker opens
after 5 consecutive failures for 60 s; it never drops: non-critical deliveries wait for it,
critical ones go through anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    primary_attempts: int = 3
    primary_backoff_s: tuple[float, ...] = (1.0, 2.0, 4.0)
    total_attempts: int = 5
    dlq_backoff_s: tuple[float, ...] = (30.0, 120.0)

    def next_step(self, failed_attempt: int, retry_after_s: float | None = None) -> tuple[str, float]:
        """After attempt `failed_attempt` (1-based) failed transiently: ("retry", delay),
        ("dlq", delay) or ("abandon", 0)."""
        if failed_attempt < self.primary_attempts:
            delay = self.primary_backoff_s[min(failed_attempt - 1, len(self.primary_backoff_s) - 1)]
            return "retry", max(delay, retry_after_s or 0)
        if failed_attempt < self.total_attempts:
            k = failed_attempt - self.primary_attempts
            delay = self.dlq_backoff_s[min(k, len(self.dlq_backoff_s) - 1)]
            return "dlq", max(delay, retry_after_s or 0)
        return "abandon", 0.0


@dataclass(slots=True)
class CircuitBreaker:
    failure_threshold: int = 5
    open_for_s: float = 60.0
    failures: int = 0
    opened_at: float | None = None

    def state(self, now_s: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if now_s - self.opened_at < self.open_for_s else "half-open"

    def allows(self, now_s: float, critical: bool) -> bool:
        return critical or self.state(now_s) != "open"

    def reopens_at(self) -> float:
        return (self.opened_at or 0.0) + self.open_for_s

    def record(self, ok: bool, now_s: float) -> None:
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.failure_threshold or self.state(now_s) == "half-open":
            self.opened_at = now_s


@dataclass(slots=True)
class Breakers:
    failure_threshold: int = 5
    open_for_s: float = 60.0
    by_channel: dict[str, CircuitBreaker] = field(default_factory=dict)

    def __getitem__(self, channel: str) -> CircuitBreaker:
        if channel not in self.by_channel:
            self.by_channel[channel] = CircuitBreaker(self.failure_threshold, self.open_for_s)
        return self.by_channel[channel]


FINAL = {"SENT", "DEAD_LETTERED", "ABANDONED", "DISABLED", "PERMANENT_FAILURE"}


def overall_status(channels: dict[str, str], fallback_of: dict[str, str]) -> str:
    """The alert's status from its channels' (primary channels only; a fallback that delivered
    counts for the primary it stands in for)."""
    primaries = [c for c in channels if c not in fallback_of.values()]
    if not primaries:
        return "PENDING"

    def delivered(c: str) -> bool:
        fb = fallback_of.get(c)
        return channels.get(c) == "SENT" or (fb is not None and channels.get(fb) == "SENT")

    states = [channels[c] for c in primaries]
    if all(delivered(c) for c in primaries):
        return "SENT"
    if any(delivered(c) for c in primaries):
        return "PARTIALLY_SENT"
    if all(s == "ABANDONED" for s in states):
        return "ABANDONED"
    if all(s in ("DEAD_LETTERED", "ABANDONED") for s in states):
        return "DEAD_LETTERED"
    if any(s in ("PERMANENT_FAILURE", "DISABLED") for s in states):
        return "FAILED"
    return "PENDING"
