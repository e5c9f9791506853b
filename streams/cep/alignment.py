"""Event-time alignment of the CEP re-key's input partitions. Pure.

The re-key reads geofence events from every partition of `geo.geofence-events` and writes
them keyed by entity. Draining a backlog (after an outage, or a replay), a fetch returns whole
producer batches — thousands of records of one partition — so an entity's events from two
partitions can arrive minutes of event time apart, far past any pattern's lateness. The re-key
therefore holds records back and writes them in merged event-time order: a record is written
once every partition that can still deliver something has reached its time (less `align_ms`).
Held records are not committed, so a crash re-reads them.

A partition with unread records always constrains the merge: draining a backlog, a fetch
serves some partitions for seconds while others wait their turn, and a waiting partition may
hold the oldest records. A partition that has held records or has delivered nothing yet
constrains it while it keeps moving; one whose event time has not advanced for `max_stall_s`
(stalled, empty, or its lag is only transaction markers) no longer holds the others.

A partition that shows nothing unread may still be about to deliver: records written at the
same moment (one producer's batch, one transaction's commit markers) become readable partition
by partition, and the consumer learns of another partition's new records only from its next
fetch. So a record ahead of such a caught-up partition's event time (plus `align_ms`) waits
`settle_s` of wall time after it was read before it is written past it; one the caught-up
partitions have all reached goes at once. (A clean-clone CI run once missed the entity-keyed
matches of the earliest events of a burst whose event times spanned more than the pattern's
1 s lateness; this is the one way found for that to happen. It was not reproduced.)
"""

from __future__ import annotations

from typing import Iterable


def frontier(seen: dict[int, int], backlog: set[int], held: set[int], assigned: set[int],
             moved_at: dict[int, float], now_s: float, align_ms: int, max_stall_s: float) -> int | None:
    """The event time up to which held records may be written (None: no partition constrains).
    seen: partition -> newest event time read from it; backlog: partitions with unread records;
    held: partitions with held records. A constraining partition not read from yet counts as
    at event time -1, below every record, so nothing is written until it delivers."""
    moving = (held | {p for p in assigned if p not in seen}) - backlog
    constraining = [seen.get(p, -1) for p in backlog & assigned] + [
        seen.get(p, -1) for p in moving & assigned if now_s - moved_at.get(p, now_s) < max_stall_s]
    return min(constraining) + align_ms if constraining else None


def settled(seen: dict[int, int], assigned: set[int], align_ms: int) -> int:
    """The event time every assigned partition, caught up or not, has reached (plus
    `align_ms`): a record at or before it can come before nothing still to be read."""
    return min(seen.get(p, -1) for p in assigned) + align_ms if assigned else -1


def releasable(rows: Iterable[tuple[int, float]], upto: int | None, settled_ms: int, read_by: float) -> int:
    """How many of a partition's held records ((event time, monotonic time read) in offset
    order) to write: the prefix at or before `upto` (a record exactly at it is written) that is
    also settled, or was read at or before `read_by` (now less the settle time), so committed
    offsets stay a prefix."""
    n = 0
    for t, read_at in rows:
        if (upto is not None and t > upto) or (t > settled_ms and read_at > read_by):
            break
        n += 1
    return n
