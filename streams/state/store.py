"""The key-value store interface and its registry.

A store holds bytes under bytes; `write` applies a batch atomically (a value of None deletes).
Backends are looked up by name and imported only when used, so an optional library (rocksdict)
is needed only by whoever picks it:

    memory   a dict; state lives in RAM and is rebuilt from the changelog at every start
    rocksdb  RocksDB on local disk (rocksdict); survives restarts, RAM holds only its caches
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Iterable, Iterator, Protocol

from geoflux.errors import ConfigurationError
from geoflux.settings import StreamSettings


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys`, in their order (one call for a whole batch of lookups)."""
        ...

    def write(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Puts and deletes (value None), all or nothing."""
        ...

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with `prefix`, in key order."""
        ...

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) with start <= key < stop, in key order."""
        ...

    def count(self) -> int:
        """An estimate for stores that cannot count cheaply (progress and metrics only)."""
        ...

    def wipe(self) -> None:
        """Deletes everything (a store found inconsistent is rebuilt from its changelog)."""
        ...

    def close(self) -> None: ...


_KINDS = {
    "memory": "streams.state.memory:MemoryStore",
    "rocksdb": "streams.state.rocksdb:RocksDBStore",
}


def store_kinds() -> list[str]:
    return sorted(_KINDS)


def default_kind() -> str:
    """RocksDB where rocksdict is installed (the `rocksdb` extra), memory otherwise."""
    return "rocksdb" if importlib.util.find_spec("rocksdict") else "memory"


def resolve_kind(kind: str) -> str:
    kind = kind.split("://")[0] if kind else "auto"  # "rocksdb://" as older settings wrote it
    return default_kind() if kind == "auto" else kind


def open_store(kind: str, path: Path | None = None, **options) -> KeyValueStore:
    kind = resolve_kind(kind)
    if kind not in _KINDS:
        raise ConfigurationError(f"state store {kind!r}: use one of auto, {', '.join(store_kinds())}")
    module, _, name = _KINDS[kind].partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ConfigurationError(f"state store {kind!r} needs {exc.name}: pip install "
                                 "'geoflux[rocksdb]' or set GEOFLUX_STREAM_STORE=memory") from exc
    return cls(path, **options)


def open_configured_store(settings: StreamSettings, path: Path) -> KeyValueStore:
    """The store `settings` name, with its RocksDB options (a memory store ignores them)."""
    return open_store(settings.store, path, block_cache_mb=settings.rocksdb_block_cache_mb,
                      write_buffer_mb=settings.rocksdb_write_buffer_mb,
                      flush_interval_s=settings.rocksdb_flush_interval_s)
