"""A store in memory, kept in key order: for tests and small deployments. Nothing survives the
process."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from sortedcontainers import SortedDict


class MemoryStore:
    persistent = False

    def __init__(self, path: Path | None = None, **_options) -> None:
        # in key order, as RocksDB keeps them: a range scan (the timers', every tick) reads its
        # range, not every key sorted again. A scan is read whole before it is returned, so a
        # caller writing while it iterates sees what was there when it began, as with RocksDB.
        self._data: SortedDict = SortedDict()

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return [self._data.get(k) for k in keys]

    def write(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        for key, value in items:
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        pairs = []
        for key in self._data.irange(minimum=prefix):
            if not key.startswith(prefix):
                break
            pairs.append((key, self._data[key]))
        return iter(pairs)

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        return iter([(k, self._data[k]) for k in self._data.irange(start, stop, inclusive=(True, False))])

    def count(self) -> int:
        return len(self._data)

    def wipe(self) -> None:
        self._data.clear()

    def close(self) -> None:
        pass
