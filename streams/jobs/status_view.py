"""The followed `jobs.status` topic in a local key-value store, so a process that must answer
for every job (the API, the job worker) holds the statuses on disk and only small counters
in memory.

`jobs.status` is compacted and kept for ever: a dict of every status grew with every job ever
run, in every API process. Here the statuses live in a `KeyValueStore` (RocksDB on local disk
by default, its RAM bounded by its caches; `GEOFLUX_STREAM_STORE`), private to the process
and rebuilt from the topic at start. Keys:

    s{job_id}                            the status record (Avro, as on the topic)
    t{tenant}\\0{newest-first ms}{job_id}  a tenant's jobs, newest first (a prefix scan)
    a{newest-first ms}{job_id}            every job, newest first (operators)
    k{index key}                         idempotency index -> job id and its creation time
    e{created ms}{index key}             the same entries in time order, to expire them

In memory: job counts per (tenant, process, status), jobs accepted or running per tenant and
the creation times of the last minute's jobs per tenant (quotas), all bounded by tenants and
processes or by the submission rate, never by the number of jobs.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections import Counter, deque
from pathlib import Path

from connectors.topic_reader import TopicReader
from geoflux.pids import pid_alive
from geoflux.settings import KafkaSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.jobs import idempotency
from streams.jobs.quotas import WINDOW_MS
from streams.state import KeyValueStore, open_configured_store

ACTIVE = ("accepted", "running")
FLUSH_AT = 20_000  # pending writes
_MAX_MS = (1 << 63) - 1


def _ms(ms: int) -> bytes:
    return f"{ms:016x}".encode()


def _newest_first(ms: int) -> bytes:
    return _ms(_MAX_MS - ms)


def open_private_store(name: str, settings: StreamSettings | None = None) -> tuple[KeyValueStore, Path]:
    """A store only this process uses, under the stream data directory, and its directory;
    leftovers of processes that died without closing theirs are removed (a view is rebuilt from
    its topic at every start anyway). A zombie's leftover counts as dead: it exited and only
    waits to be reaped, so nothing will open its store again."""
    s = settings or StreamSettings()
    root = Path(s.data_dir) / "views"
    for stale in root.glob(f"{name}-*-*") if root.is_dir() else []:
        pid = stale.name.rsplit("-", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    path = root / f"{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    store = open_configured_store(s, path)
    return store, path


class StatusView:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, store: KeyValueStore, *,
                 indexed: bool = True, private_dir: Path | None = None) -> None:
        """`indexed`: keep the lists, the idempotency index and the counters (the API); the
        worker only looks statuses up. `private_dir` is removed at close."""
        self.codec, self.store, self.indexed = codec, store, indexed
        self.private_dir = private_dir
        self.kafka, self.t_status = kafka, topic("jobs.status", kafka)
        self.reader: TopicReader | None = None
        self.lock = threading.RLock()
        # writes not in the store yet: applied a poll's worth at a time (one RocksDB write per
        # few thousand records instead of one per record: the view is rebuilt at every start)
        self._pending: dict[bytes, bytes | None] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (tenant, process, status)
        self.active: Counter[str] = Counter()  # tenant -> jobs accepted or running
        self.recent: dict[str, deque[int]] = {}  # tenant -> created_ms of the last minute's jobs

    def start(self, timeout_s: float = 1800.0) -> "StatusView":
        self.reader = TopicReader(self.kafka, self.t_status, "JobStatus", self.codec, self._apply)
        self.reader.load(timeout_s)
        self.flush()
        self._thread = threading.Thread(target=self._follow, name="jobs-status-view", daemon=True)
        self._thread.start()
        return self

    def _follow(self) -> None:
        while not self._stop.is_set():
            self.reader.poll(0.2)
            self.flush()

    def flush(self) -> None:
        with self.lock:
            if self._pending:
                self.store.write(list(self._pending.items()))
                self._pending.clear()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.reader is not None:
            self.reader.close()
        self.store.close()
        if self.private_dir is not None:
            shutil.rmtree(self.private_dir, ignore_errors=True)

    # -- applying statuses ----------------------------------------------------------------------
    def _apply(self, job_id: str, rec: dict | None, msg) -> bool:
        if rec is None:
            return False
        with self.lock:
            self._record(rec, msg.value())
        return True

    def record_own(self, rec: dict, *, replacing: str | None = None) -> None:
        """A status this process has just written, before it comes back from the topic: applied
        only if the view still holds what it was decided on (`replacing`: that status; None:
        nothing), so a newer record the reader has already applied is never overwritten."""
        with self.lock:
            current = self.get(rec["job_id"])
            if (current["status"] if current else None) == replacing:
                self._record(rec, self.codec.encode(self.t_status, "JobStatus", rec))
                self.flush()  # listed at once

    def _record(self, rec: dict, value: bytes) -> None:
        job_id = rec["job_id"]
        skey = b"s" + job_id.encode()
        prev_value = self._raw(skey)
        if prev_value == value:
            return  # our own write coming back
        pending = self._pending
        pending[skey] = value
        if self.indexed:
            self._index_and_count(rec, prev_value)
        if len(pending) >= FLUSH_AT:
            self.flush()

    def _index_and_count(self, rec: dict, prev_value: bytes | None) -> None:
        pending = self._pending
        prev = self.codec.decode(prev_value, "JobStatus") if prev_value else None
        if prev is None:
            newest, tenant, ident = _newest_first(rec["created_ms"]), rec["tenant_id"].encode(), rec["job_id"].encode()
            pending[b"t" + tenant + b"\x00" + newest + ident] = b""
            pending[b"a" + newest + ident] = b""
        if rec["idempotency_key"]:
            pending.update(self._index_writes(rec))
        if prev is not None:
            self.counts[(prev["tenant_id"], prev["process_id"], prev["status"])] -= 1
            self.active[prev["tenant_id"]] -= prev["status"] in ACTIVE
        self.counts[(rec["tenant_id"], rec["process_id"], rec["status"])] += 1
        self.active[rec["tenant_id"]] += rec["status"] in ACTIVE
        if prev is None and time.time() * 1000 - rec["created_ms"] < WINDOW_MS:
            self.recent.setdefault(rec["tenant_id"], deque()).append(rec["created_ms"])

    def _index_writes(self, rec: dict) -> list[tuple[bytes, bytes | None]]:
        index = idempotency.index_key(rec["tenant_id"], rec["idempotency_header"],
                                      rec["idempotency_key"]).encode()
        held = self._raw(b"k" + index)
        if held is not None and int(held.split(b"\x00")[1]) > rec["created_ms"]:
            return []  # partitions are read in any interleaving: the newest job of a key wins
        if held is not None and held.split(b"\x00")[0] == rec["job_id"].encode():
            return []
        return [(b"k" + index, rec["job_id"].encode() + b"\x00" + str(rec["created_ms"]).encode()),
                (b"e" + _ms(rec["created_ms"]) + index, b"")]

    # -- reading --------------------------------------------------------------------------------
    def _raw(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        return self.store.get(key)

    def get(self, job_id: str) -> dict | None:
        value = self._raw(b"s" + job_id.encode())
        return self.codec.decode(value, "JobStatus") if value else None

    def indexed_job(self, index: str) -> dict | None:
        held = self._raw(b"k" + index.encode())
        return self.get(held.split(b"\x00")[0].decode()) if held else None

    def page(self, tenant_id: str | None, status: str | None, process_id: str | None,
             offset: int, limit: int) -> tuple[list[dict], int]:
        """Jobs newest first, filtered; and how many match in all (from the counters)."""
        with self.lock:
            self.flush()
            total = sum(n for (t, p, s), n in self.counts.items()
                        if (tenant_id is None or t == tenant_id) and (status is None or s == status)
                        and (process_id is None or p == process_id))
        prefix = b"t" + tenant_id.encode() + b"\x00" if tenant_id is not None else b"a"
        items: list[dict] = []
        skip = offset
        for key, _ in self.store.items(prefix):
            st = self.get(key[len(prefix) + 16:].decode())
            if st is None or (status and st["status"] != status) or (process_id and st["process_id"] != process_id):
                continue
            if skip:
                skip -= 1
                continue
            items.append(st)
            if len(items) >= limit:
                break
        return items, total

    def usage(self, tenant_id: str, now_ms: int) -> tuple[int, list[int]]:
        """(jobs accepted or running, creation times of the jobs of the last minute)."""
        with self.lock:
            recent = self.recent.get(tenant_id)
            while recent and now_ms - recent[0] >= WINDOW_MS:
                recent.popleft()
            return self.active[tenant_id], list(recent or ())

    # -- expiry ---------------------------------------------------------------------------------
    def expire_index(self, before_ms: int) -> int:
        """Forgets idempotency entries of jobs created before `before_ms`; how many."""
        removed = 0
        while True:
            batch: list[tuple[bytes, bytes | None]] = []
            with self.lock:
                self.flush()
                for ekey, _ in self.store.items(b"e"):
                    created = int(ekey[1:17], 16)
                    if created >= before_ms or len(batch) >= 10_000:
                        break
                    index = ekey[17:]
                    held = self.store.get(b"k" + index)
                    if held is not None and int(held.split(b"\x00")[1]) == created:
                        batch.append((b"k" + index, None))
                        removed += 1
                    batch.append((ekey, None))
                if not batch:
                    return removed
                self.store.write(batch)
