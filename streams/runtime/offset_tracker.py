"""At-least-once offset bookkeeping for work that finishes out of order. Pure.

A partition's committable offset is its lowest unfinished offset (or one past the highest
seen when nothing is unfinished): a crash re-delivers every unfinished record and nothing
finished is lost.
"""

from __future__ import annotations

from collections import defaultdict

TP = tuple[str, int]


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: dict[TP, set[int]] = defaultdict(set)
        self._high: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def add(self, tp: TP, offset: int) -> None:
        self._pending[tp].add(offset)
        self._high[tp] = max(self._high.get(tp, -1), offset)

    def done(self, tp: TP, offset: int) -> None:
        self._pending[tp].discard(offset)

    def drop(self, tp: TP) -> None:
        self._pending.pop(tp, None)
        self._high.pop(tp, None)
        self._committed.pop(tp, None)

    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    def committable(self) -> dict[TP, int]:
        """Offsets to commit now: only partitions whose position moved since the last call."""
        out = {}
        for tp, high in self._high.items():
            pend = self._pending.get(tp)
            nxt = min(pend) if pend else high + 1
            if self._committed.get(tp) != nxt:
                out[tp] = nxt
        return out

    def committed(self, offsets: dict[TP, int]) -> None:
        self._committed.update(offsets)
