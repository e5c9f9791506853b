"""Work an at-least-once worker has read ahead and not started yet. Pure.

Records are consumed as they come, but each is worked on when it is due (a retry's backoff,
a breaker that reopens later): it is held until then, so one waiting record never blocks
another. Due work becomes ready and starts in the worker's rank order (job priority), so
under load what matters most overtakes what was read first. A record that could not be read
yet (the schema registry away) is kept as it came, to be read again later.

Everything here is keyed by the record's partition, so a revoked partition's work can be
forgotten: its new owner reads it again from the last committed offset.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

TP = tuple[str, int]
M = TypeVar("M")


@dataclass(slots=True)
class Work:
    """One consumed record to work on: where it came from (for its offset and its DLQ
    envelope), what it says, and anything its reader kept alongside (the DLQ envelope it was
    unwrapped from)."""
    tp: TP
    offset: int
    record: dict
    extra: Any = None


def first_come(_work: Work) -> tuple:
    return ()


class WorkQueue(Generic[M]):
    def __init__(self, rank: Callable[[Work], tuple] = first_come) -> None:
        self._rank = rank
        self._seq = itertools.count()  # ties keep arrival order; Work itself is not comparable
        self._held: list[tuple[float, int, Work]] = []
        self._ready: list[tuple[tuple, int, Work]] = []
        self._unread: list[tuple[float, int, TP, M]] = []

    def __len__(self) -> int:
        """Records read and not started: held, ready, or waiting to be read again."""
        return len(self._held) + len(self._ready) + len(self._unread)

    def hold(self, work: Work, due_s: float) -> None:
        heapq.heappush(self._held, (due_s, next(self._seq), work))

    def read_later(self, tp: TP, message: M, due_s: float) -> None:
        heapq.heappush(self._unread, (due_s, next(self._seq), tp, message))

    def unread_due(self, now_s: float) -> list[M]:
        """Records to read again now, in the order they were set aside."""
        out = []
        while self._unread and self._unread[0][0] <= now_s:
            out.append(heapq.heappop(self._unread)[3])
        return out

    def release(self, now_s: float) -> None:
        """Held work due at `now_s` (or earlier) becomes ready: due exactly now counts."""
        while self._held and self._held[0][0] <= now_s:
            work = heapq.heappop(self._held)[2]
            heapq.heappush(self._ready, (self._rank(work), next(self._seq), work))

    def next_ready(self) -> Work | None:
        return heapq.heappop(self._ready)[2] if self._ready else None

    def forget(self, revoked: set[TP]) -> None:
        self._held = [h for h in self._held if h[2].tp not in revoked]
        self._ready = [r for r in self._ready if r[2].tp not in revoked]
        self._unread = [u for u in self._unread if u[2] not in revoked]
        for heap in (self._held, self._ready, self._unread):
            heapq.heapify(heap)
