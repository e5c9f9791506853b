"""A store in a dict: for tests and small deployments. Nothing survives the process."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator


class MemoryStore:
    persistent = False

    def __init__(self, path: Path | None = None, **_options) -> None:
        self._data: dict[bytes, bytes] = {}

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
        for key in sorted(k for k in self._data if k.startswith(prefix)):
            yield key, self._data[key]

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self._data if start <= k < stop):
            yield key, self._data[key]

    def count(self) -> int:
        return len(self._data)

    def wipe(self) -> None:
        self._data.clear()

    def close(self) -> None:
        pass
