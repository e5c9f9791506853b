"""RocksDB on local disk through rocksdict, in raw (bytes) mode.

Memory is bounded by settings rather than by the data: an LRU block cache and a few write
buffers per store (RocksDB's own defaults would let every partition's store take hundreds of
megabytes).

No write-ahead log (as Kafka Streams runs its stores): the changelog is the durable copy, and
writing RocksDB's own log cost the evaluator 3-7 % of its CPU (`benchmarks/evaluator_cpu.py`,
states of 1.6 KB). A crash then loses the writes still in the memtables, never part of one: a
batch goes into one memtable whole, and a memtable is flushed whole, so the store comes back as
it was after some earlier batch, with that batch's checkpoint, and the restore replays the
changelog from there. Memtables are flushed at least every `flush_interval_s` (in RocksDB's
background thread), which bounds how far back that is.

For the same reason a store that cannot be opened (not one another process holds) is discarded
and opened empty, with no checkpoint, so the stage restores it in full: a worker SIGKILLed
while it deleted a store file by file left a directory RocksDB refused ("No such file or
directory: ... MANIFEST"), and every restart crashed on it. A wipe now moves the directory
aside in one rename before deleting it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import structlog
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from geoflux.errors import ConfigurationError

log = structlog.get_logger("geoflux.state")
DISCARDED = ".discarded-"  # a store being deleted: never opened, removed at the next open


class RocksDBStore:
    persistent = True

    def __init__(self, path: Path | None, *, block_cache_mb: int = 16, write_buffer_mb: int = 8,
                 flush_interval_s: float = 30.0, **_options) -> None:
        if path is None:
            raise ConfigurationError("a RocksDB store needs a directory (GEOFLUX_STREAM_DATA_DIR)")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._options = Options(raw_mode=True)
        self._options.create_if_missing(True)
        self._options.set_write_buffer_size(write_buffer_mb * 1024 * 1024)
        self._options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(block_cache_mb * 1024 * 1024))
        table.set_cache_index_and_filter_blocks(True)
        table.set_bloom_filter(10, False)  # a lookup of an absent key (most restore lookups) skips the files
        self._options.set_block_based_table_factory(table)
        self._write_options = WriteOptions()
        self._write_options.disable_wal = True
        self.flush_interval_s = flush_interval_s
        self._flushed_at = time.monotonic()
        for leftover in self.path.parent.glob(f"{self.path.name}{DISCARDED}*"):
            shutil.rmtree(leftover, ignore_errors=True)  # a wipe killed mid-delete
        try:
            self._db = Rdict(str(self.path), self._options)
        except Exception as exc:  # rocksdict raises a bare Exception
            if "lock" in str(exc).lower():
                raise ConfigurationError(
                    f"the state store {self.path} is in use by another process: two workers with the "
                    "same --instance, or two stacks sharing GEOFLUX_STREAM_DATA_DIR") from exc
            log.warning("state store unreadable; discarded, to be restored from the changelog",
                        path=str(self.path), error=str(exc)[:300])
            self._discard()
            self._db = Rdict(str(self.path), self._options)

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        return self._db.get(keys)  # RocksDB's MultiGet

    def write(self, items: Iterable[tuple[bytes, bytes | None]]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self._db.write(batch, self._write_options)
        if time.monotonic() - self._flushed_at >= self.flush_interval_s:
            self._flushed_at = time.monotonic()
            self._db.flush(False)  # asks for it; RocksDB's flush thread writes the files

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        opts = _bounded(prefix_end(prefix))  # held while the iterator lives
        for key, value in self._db.items(from_key=prefix, read_opt=opts):
            if not key.startswith(prefix):
                return
            yield key, value

    def scan(self, start: bytes, stop: bytes) -> Iterator[tuple[bytes, bytes]]:
        opts = _bounded(stop)
        for key, value in self._db.items(from_key=start, read_opt=opts):
            if key >= stop:
                return
            yield key, value

    def count(self) -> int:
        try:
            return int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)
        except Exception:  # the estimate is best effort; progress lines can do without it
            return 0

    def wipe(self) -> None:
        self._db.close()
        self._discard()
        self._db = Rdict(str(self.path), self._options)

    def _discard(self) -> None:
        """Deletes the store's directory as one step: renamed aside first, so a kill while the
        files go leaves a directory no open reads, not a store missing some of its files."""
        if not self.path.exists():
            return
        aside = self.path.with_name(f"{self.path.name}{DISCARDED}{uuid.uuid4().hex[:8]}")
        self.path.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)

    def close(self) -> None:
        self._db.flush(True)  # what the memtables hold, on disk before the files are let go
        self._db.close()


def prefix_end(prefix: bytes) -> bytes | None:
    """The least key above every key that starts with `prefix` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1]) if stripped else None


def _bounded(upper: bytes | None) -> ReadOptions | None:
    # Without the bound, an iterator that has run out of its range still seeks on to the next
    # live key, through every deleted key in the way. The evaluator asks for its first timer
    # (an empty range) next to its deleted history chunks: with 200,000 of them that one seek
    # took 21 ms; bounded, 3 us. RocksDB stops at the bound instead.
    if upper is None:
        return None
    opts = ReadOptions()
    opts.set_iterate_upper_bound(upper)
    return opts
