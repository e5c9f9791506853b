"""Event-time alignment of the CEP re-key's input partitions, pure.

The re-key reads geofence events from every partition of `geo.geofence-events` and writes
them keyed by entity. Draining a backlog (after an outage, or a replay), a fetch returns whole
producer batches — thousands of records of one partition — so an entity's events from two
partitions can arrive minutes of event time apart, far past any pattern's lateness. The re-key
therefore holds records back and writes them in merged event-time order: a record is written
once every partition that can still deliver something has reached its time (less `align_ms`).
Held records are not committed, so a crash re-reads them.

A partition constrains the merge while it has unread or held records, or has not delivered
anything yet, and keeps moving; one whose event time has not advanced for `max_stall_s`
(stalled, empty, or its lag is only transaction markers) no longer holds the others.
"""

from __future__ import annotations


def releasable(held: dict[int, list[int]], seen: dict[int, int], backlog: set[int],
               assigned: set[int], moved_at: dict[int, float], now_s: float, align_ms: int,
               max_stall_s: float) -> dict[int, int]:
    """held: partition -> event times of its held records, in offset order; seen: partition ->
    newest event time read from it; backlog: partitions with unread records. Returns
    partition -> how many of its held records (a prefix, so offsets stay a prefix) to write."""
    waiting = backlog | {p for p, t in held.items() if t} | {p for p in assigned if p not in seen}
    constraining = [seen.get(p, -1) for p in waiting & assigned
                    if now_s - moved_at.get(p, now_s) < max_stall_s]
    frontier = min(constraining) + align_ms if constraining else None
    out = {}
    for p, times in held.items():
        n = 0
        while n < len(times) and (frontier is None or times[n] <= frontier):
            n += 1
        out[p] = n
    return out
