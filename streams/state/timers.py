"""Timers as entries of a partition's store index. Pure.

    t<due ms, 16 digits>\\0<state key>

The due time leads, so the index is in due order: a tick reads only the entries that are due
instead of visiting every state, and a restart finds its timers in the restored store instead
of scanning it. A stage returns `timer_entry(...)` from its `index_keys`; the entry changes
with the state in the same write.
"""

from __future__ import annotations

from typing import Iterable

TIMERS = b"t"
SEP = b"\x00"


def timer_entry(due_ms: int, key: str) -> bytes:
    return TIMERS + b"%016d" % due_ms + SEP + key.encode()


def parse_timer(entry: bytes) -> tuple[int, str]:
    """(due ms, state key) of an index entry that starts with TIMERS."""
    due, _, key = entry[len(TIMERS):].partition(SEP)
    return int(due), key.decode()


def due_keys(entries: Iterable[bytes], now_ms: int, limit: int = 10_000) -> list[str]:
    """State keys due at or before `now_ms`, earliest first, each once (a key may hold more
    than one timer), at most `limit` of them: `entries` are the index's timers in order."""
    out: dict[str, None] = {}
    for entry in entries:
        due, key = parse_timer(entry)
        if due > now_ms or len(out) >= limit:
            break
        out[key] = None
    return list(out)


def next_due(entries: Iterable[bytes]) -> int | None:
    for entry in entries:
        return parse_timer(entry)[0]
    return None
