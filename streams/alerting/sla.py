"""Delivery SLA attainment. Pure: no I/O.

An alert (or one channel of it) meets its severity's target when it was delivered within
`within_s` of being created. Over a trailing window, attainment = met / decided, where decided
counts the delivered ones and those still undelivered past their deadline (a missing delivery
is a miss, not a gap in the data); alerts still inside their deadline are not decided yet.

Edges: the window holds alerts created from `now - window` to `now`, both included; a delivery
exactly `within_s` late meets the target, and an undelivered alert is a miss only once its
deadline has passed (not at it). A row is breached when at least `min_samples` alerts are
decided and attainment is below the target (exactly on target is met). Percentiles are the
value at rank int(q * n) of the sorted latencies.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ConfigurationError

ALL_CHANNELS = "*"  # the alert as a whole: delivered by any channel (fallbacks included)


@dataclass(frozen=True, slots=True)
class SlaTarget:
    within_ms: int
    target: float


@dataclass(frozen=True, slots=True)
class Delivery:
    severity: str
    channel: str  # or ALL_CHANNELS
    created_ms: int
    delivered_ms: int | None


def parse_targets(raw: dict[str, dict[str, float]]) -> dict[str, SlaTarget]:
    out = {}
    for severity, spec in raw.items():
        within, target = spec.get("within_s"), spec.get("target")
        if not isinstance(within, (int, float)) or within <= 0 or not isinstance(target, (int, float)) \
                or not 0 < target <= 1:
            raise ConfigurationError(f"SLA target for {severity}: needs within_s > 0 and 0 < target <= 1")
        out[severity] = SlaTarget(int(within * 1000), float(target))
    return out


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def attainment(deliveries: list[Delivery], targets: dict[str, SlaTarget], now_ms: int,
               window_ms: int, min_samples: int = 1) -> list[dict]:
    """One row per (severity, channel) with created_ms in the window."""
    groups: dict[tuple[str, str], list[Delivery]] = {}
    for d in deliveries:
        if now_ms - window_ms <= d.created_ms <= now_ms and d.severity in targets:
            groups.setdefault((d.severity, d.channel), []).append(d)
    rows = []
    for (severity, channel), items in sorted(groups.items()):
        t = targets[severity]
        met = missed = 0
        latencies = []
        for d in items:
            if d.delivered_ms is not None:
                latency = d.delivered_ms - d.created_ms
                latencies.append(latency / 1000)
                met, missed = (met + 1, missed) if latency <= t.within_ms else (met, missed + 1)
            elif now_ms - d.created_ms > t.within_ms:
                missed += 1
        decided = met + missed
        ratio = met / decided if decided else None
        latencies.sort()
        rows.append({"severity": severity, "channel": channel, "within_s": t.within_ms / 1000,
                     "target": t.target, "alerts": len(items), "decided": decided, "met": met,
                     "missed": missed, "attainment": ratio,
                     "breached": ratio is not None and decided >= min_samples and ratio < t.target,
                     "p50_s": _percentile(latencies, 0.50), "p95_s": _percentile(latencies, 0.95),
                     "p99_s": _percentile(latencies, 0.99)})
    return rows
