"""Which keys are due for a tick, without visiting every key's state. Pure.

A heap of (due time, key) with lazy deletion: `set` pushes the key's new due time and
remembers it; an entry whose time is no longer the key's current one is skipped when it comes
up. The stage rebuilds it from restored state when a partition is assigned; state itself may
live on disk, the index is small (one entry per key with a timer).
"""

from __future__ import annotations

import heapq


class TimerIndex:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: str, due: int | None) -> None:
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 4 * len(self._due) + 1024:  # mostly stale entries: rebuild
            self._heap = [(d, k) for k, d in self._due.items()]
            heapq.heapify(self._heap)

    def forget(self, keys) -> None:
        for key in keys:
            self._due.pop(key, None)

    def pop_due(self, now: int, limit: int = 10_000) -> list[str]:
        """Keys due at or before `now` (at most `limit`), removed from the index: the caller
        sets each one's next due time after its tick."""
        out: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(out) < limit:
            due, key = heapq.heappop(heap)
            if self._due.get(key) == due:
                del self._due[key]
                out.append(key)
        return out

    def next_due(self) -> int | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None
