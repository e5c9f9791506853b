"""One changelog partition's state in a local store, with the offset it reflects.

Layout inside the store (all bytes):

    s<key>        the state, exactly the bytes written to the changelog
    i<index key>  secondary index entries a stage derives from its states (timers, members)
    r<key>        the index keys a state currently has, so an update can drop the stale ones
                  (each with a 4-byte length: index keys hold any byte, separators included)
    m<name>       stage metadata that also travels on the changelog (key "\\x00<name>")
    \\x00ckpt      {"offset": next changelog offset reflected, "written_ms": ..., "format": 3}

A checkpoint without the current `format` belongs to a store laid out otherwise, or indexed
otherwise: such a store is restored in full, once. Format 1 split r<key> at NUL bytes, which
index keys contain, so stale index entries were never removed; format 2 stores of the CEP stages
lack the timer entries their states now carry.

A table is written only with committed data (after the Kafka transaction that carried the same
changelog records committed) and in one atomic batch with its checkpoint, so the store never
holds state the changelog does not; restoring from the checkpoint to the changelog's end brings
it up to date. Decoded states live in the stage's bounded cache (`StateCache`), not here.
"""

from __future__ import annotations

import json
import struct
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator

from streams.state.store import KeyValueStore

STATE, INDEX, REVERSE, META = b"s", b"i", b"r", b"m"
CHECKPOINT = b"\x00ckpt"
META_PREFIX = "\x00"  # changelog keys starting with it are stage metadata, not states
FORMAT = 3
_LEN = struct.Struct(">I")

IndexFn = Callable[[str, Any], Iterable[bytes]]


class PartitionTable:
    def __init__(self, store: KeyValueStore, partition: int) -> None:
        self.store, self.partition = store, partition

    # -- reads ---------------------------------------------------------------------------------
    def raw(self, key: str) -> bytes | None:
        return self.store.get(STATE + key.encode())

    def keys(self) -> Iterator[str]:
        for k, _ in self.store.items(STATE):
            yield k[1:].decode()

    def raw_items(self) -> Iterator[tuple[str, bytes]]:
        for k, v in self.store.items(STATE):
            yield k[1:].decode(), v

    def index(self, prefix: bytes) -> Iterator[bytes]:
        """Index keys starting with `prefix`, in order (e.g. timers by due time)."""
        for k, _ in self.store.items(INDEX + prefix):
            yield k[1:]

    def index_range(self, start: bytes, stop: bytes) -> Iterator[bytes]:
        for k, _ in self.store.scan(INDEX + start, INDEX + stop):
            yield k[1:]

    def meta(self, name: str) -> bytes | None:
        return self.store.get(META + name.encode())

    def checkpoint(self) -> dict | None:
        raw = self.store.get(CHECKPOINT)
        if raw is None:
            return None
        try:
            ckpt = json.loads(raw)
            return ckpt if isinstance(ckpt.get("offset"), int) else None
        except (ValueError, AttributeError):
            return None  # unreadable: treated as missing, so the partition is restored in full

    # -- writes --------------------------------------------------------------------------------
    def apply(self, changes: Iterable[tuple[str, bytes | None, Iterable[bytes] | None]],
              next_offset: int | None) -> None:
        """Writes (key, changelog value or None, index keys or None) and the checkpoint, all or
        nothing. Keys starting with META_PREFIX are metadata records. A key changed more than
        once in `changes` (a restore slice can hold several versions) ends as its last version:
        the index entries of the earlier ones were never written, so none is left behind."""
        writes: list[tuple[bytes, bytes | None]] = []
        latest: dict[str, tuple[bytes | None, Iterable[bytes] | None]] = {}
        for key, value, index_keys in changes:
            if key.startswith(META_PREFIX):
                writes.append((META + key[1:].encode(), value))
            else:
                latest[key] = (value, index_keys)
        keys = [key.encode() for key in latest]
        olds = self.store.get_many([REVERSE + k for k in keys]) if keys else []
        for k, (value, index_keys), old in zip(keys, latest.values(), olds):
            stale = _unpack(old) if old else set()
            fresh = set(index_keys or ()) if value is not None else set()
            if stale != fresh:
                writes += [(INDEX + ik, None) for ik in stale - fresh]
                writes += [(INDEX + ik, b"") for ik in fresh - stale]
                writes.append((REVERSE + k, _pack(fresh) if fresh else None))
            writes.append((STATE + k, value))
        if next_offset is not None:
            writes.append((CHECKPOINT, json.dumps({"offset": next_offset, "written_ms": int(time.time() * 1000),
                                                   "format": FORMAT}).encode()))
        self.store.write(writes)

    def wipe(self) -> None:
        self.store.wipe()


def _pack(index_keys: set[bytes]) -> bytes:
    return b"".join(_LEN.pack(len(ik)) + ik for ik in sorted(index_keys))


def _unpack(raw: bytes) -> set[bytes]:
    out, at = set(), 0
    while at < len(raw):
        (n,), at = _LEN.unpack_from(raw, at), at + _LEN.size
        out.add(raw[at:at + n])
        at += n
    return out


class StateCache:
    """Decoded states of one stage, least recently used first out. States changed in the open
    transaction are held by the transaction itself, so evicting one here loses nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()

    def get(self, key: str) -> tuple[int, Any] | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: str, partition: int, state: Any) -> None:
        self._items[key] = (partition, state)
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def drop_partitions(self, partitions: set[int]) -> None:
        for key in [k for k, (p, _) in self._items.items() if p in partitions]:
            del self._items[key]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
