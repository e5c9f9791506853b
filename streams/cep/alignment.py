"""Event-time alignment of input partitions, pure.

The CEP re-key reads geofence events from every partition of `geo.geofence-events` and
writes them keyed by entity. Draining a backlog (after an outage, or a replay), the consumer
takes large chunks from one partition at a time, so an entity's events from two partitions
can arrive minutes of event time apart — far past any pattern's lateness, and dropped as
late. Keeping every partition with a backlog within `align_ms` of the slowest one bounds that
skew. The slowest partition holding the others back must keep moving: if its event time has
not advanced for `max_stall_s`, everything is resumed (a partition that stalls, or whose lag
is only transaction markers, must not hold the others forever).
"""

from __future__ import annotations


def align(busy: dict[int, int], paused: set[int], moved_at: dict[int, float], now_s: float,
          align_ms: int, max_stall_s: float) -> tuple[set[int], set[int]]:
    """busy: partition -> event time of its last record, for partitions with a backlog;
    moved_at: partition -> when its event time last advanced. Returns (to pause, to resume)."""
    floor = min(busy.values()) if len(busy) > 1 else None
    slowest = [p for p, ts in busy.items() if ts == floor]
    stalled = floor is not None and all(now_s - moved_at.get(p, now_s) >= max_stall_s for p in slowest)
    pause, resume = set(), set()
    for p, ts in busy.items():
        ahead = floor is not None and ts > floor + align_ms and not stalled
        if ahead and p not in paused:
            pause.add(p)
        elif p in paused and not ahead:
            resume.add(p)
    resume |= {p for p in paused if p not in busy}  # its backlog is gone: nothing to align
    return pause, resume
