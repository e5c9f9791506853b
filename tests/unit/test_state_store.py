"""Every state store backend behaves the same (parametrised over the registry)."""

import pytest

from geoflux.errors import ConfigurationError
from streams.state import open_store, store_kinds


@pytest.fixture(params=store_kinds())
def store(request, tmp_path):
    s = open_store(request.param, tmp_path / "store")
    yield s
    s.close()


def test_batch_puts_and_deletes_and_prefix_iteration(store):
    store.write([(b"t1|a", b"1"), (b"t1|b", b"2"), (b"t2|a", b"3")])
    store.write([(b"t1|b", None), (b"t1|c", b"4"), (b"missing", None)])
    assert store.get(b"t1|a") == b"1" and store.get(b"t1|b") is None
    assert list(store.items(b"t1|")) == [(b"t1|a", b"1"), (b"t1|c", b"4")]
    assert [k for k, _ in store.items()] == [b"t1|a", b"t1|c", b"t2|a"]


def test_range_scan_is_half_open(store):
    store.write([(k, b"") for k in (b"a1", b"a2", b"a3", b"b1")])
    assert [k for k, _ in store.scan(b"a2", b"b1")] == [b"a2", b"a3"]


def test_wipe_empties_the_store_and_it_stays_usable(store):
    store.write([(b"k", b"v")])
    store.wipe()
    assert list(store.items()) == [] and store.get(b"k") is None
    store.write([(b"k2", b"v2")])
    assert store.get(b"k2") == b"v2"


def test_rocksdb_survives_reopening(tmp_path):
    s = open_store("rocksdb", tmp_path / "db")
    s.write([(b"k", b"v")])
    s.close()
    again = open_store("rocksdb", tmp_path / "db")
    assert again.get(b"k") == b"v"
    again.close()


def test_unknown_kind_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="use one of"):
        open_store("redis", tmp_path)


def test_auto_and_legacy_url_forms_resolve(tmp_path):
    for kind in ("auto", "rocksdb://", "memory://"):
        open_store(kind, tmp_path / kind.replace(":", "").replace("/", "")).close()


def test_a_rocksdb_store_in_use_is_refused_with_the_reason(tmp_path):
    from geoflux.errors import ConfigurationError
    from streams.state.rocksdb import RocksDBStore

    first = RocksDBStore(tmp_path / "p0")
    try:
        with pytest.raises(ConfigurationError, match="in use by another process.*same --instance"):
            RocksDBStore(tmp_path / "p0")
    finally:
        first.close()
    RocksDBStore(tmp_path / "p0").close()  # released with its owner


def test_order_and_ranges_match_a_sorted_oracle(store):
    """Random keys over the whole byte range, written and deleted in rounds: every prefix
    iteration and range scan returns the oracle's keys in byte order."""
    import random

    rnd, oracle = random.Random(7), {}
    for _ in range(20):
        batch = []
        for _ in range(50):
            key = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 4)))
            value = None if key in oracle and rnd.random() < 0.4 else bytes([rnd.randrange(256)])
            batch.append((key, value))
        store.write(batch)
        for key, value in batch:
            if value is None:
                oracle.pop(key, None)
            else:
                oracle[key] = value
        # one or two bytes, often ending in 0xff: where the iterator's upper bound is subtle
        prefix = bytes(rnd.choice((rnd.randrange(256), 255)) for _ in range(rnd.randint(1, 2)))
        assert list(store.items(prefix)) == sorted((k, v) for k, v in oracle.items() if k.startswith(prefix))
        lo, hi = sorted(bytes([rnd.randrange(256), rnd.randrange(256)]) for _ in range(2))
        assert list(store.scan(lo, hi)) == sorted((k, v) for k, v in oracle.items() if lo <= k < hi)
    assert list(store.items()) == sorted(oracle.items())


def test_a_prefix_ends_at_the_least_key_above_all_its_keys():
    from streams.state.rocksdb import prefix_end

    assert prefix_end(b"it") == b"iu"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None and prefix_end(b"") is None


def test_writing_while_scanning_sees_the_scan_as_it_began(store):
    store.write([(k, b"v") for k in (b"t|1", b"t|2", b"t|3")])
    seen = []
    for key, _ in store.scan(b"t|", b"t|~"):
        seen.append(key)
        store.write([(b"t|2", None), (b"t|25", b"new")])  # what a timer firing may do
    assert seen == [b"t|1", b"t|2", b"t|3"]
    assert [k for k, _ in store.items(b"t|")] == [b"t|1", b"t|25", b"t|3"]


@pytest.mark.parametrize("lost", ["MANIFEST-*", "CURRENT", "OPTIONS-*"])
def test_a_store_left_half_deleted_opens_empty_instead_of_failing_every_restart(tmp_path, lost):
    """What a worker SIGKILLed while deleting a store file by file left: some files gone. The
    store is a copy of the changelog; opened empty (no checkpoint), the stage restores it."""
    from streams.state.rocksdb import RocksDBStore

    store = RocksDBStore(tmp_path / "p1")
    store.write([(b"k", b"v")])
    store.close()
    for f in (tmp_path / "p1").glob(lost):
        f.unlink()
    store = RocksDBStore(tmp_path / "p1")
    try:
        assert list(store.items()) == [] or lost == "OPTIONS-*"  # RocksDB needs no OPTIONS file
        store.write([(b"k2", b"v2")])
        assert store.get(b"k2") == b"v2"
    finally:
        store.close()


def test_a_wipe_killed_mid_delete_leaves_nothing_an_open_reads(tmp_path):
    from streams.state.rocksdb import DISCARDED, RocksDBStore

    store = RocksDBStore(tmp_path / "p2")
    store.write([(b"k", b"v")])
    store.wipe()
    assert list(store.items()) == [] and not list(tmp_path.glob(f"p2{DISCARDED}*"))
    store.close()
    half_deleted = tmp_path / f"p2{DISCARDED}0123abcd"  # as a kill during the delete leaves it
    half_deleted.mkdir()
    (half_deleted / "CURRENT").write_text("MANIFEST-000005\n")
    RocksDBStore(tmp_path / "p2").close()
    assert not half_deleted.exists()


_CRASH_WRITER = """
import sys
from streams.state.rocksdb import RocksDBStore
store = RocksDBStore(sys.argv[1], write_buffer_mb=1, flush_interval_s=0.05)
i = 0
while True:  # until SIGKILLed: each batch a counter, one new entry, the entry 100 batches old gone
    batch = [(b"n", str(i).encode()), (b"d%08d" % i, bytes([i % 251]) * 4096)]
    if i >= 100:
        batch.append((b"d%08d" % (i - 100), None))
    store.write(batch)
    i += 1
"""


def test_rocksdb_killed_mid_write_comes_back_as_after_some_whole_batch(tmp_path):
    """No write-ahead log: SIGKILL loses the memtables. What is left must be the store as it
    was after one earlier batch, exactly (what a checkpoint written in the same batch relies on)."""
    import os
    import signal
    import subprocess
    import sys

    from streams.state.rocksdb import RocksDBStore
    from tests.conftest import wait_for

    path = tmp_path / "db"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, str(path)], cwd=root,
                             env={**os.environ, "PYTHONPATH": root})
    try:
        wait_for(lambda: len(list(path.glob("*.sst"))) >= 3 or child.poll() is not None, 60,
                 what="three flushed files")
        assert child.poll() is None, "the writer died on its own"
        assert sum(p.stat().st_size for p in path.glob("*.log")) == 0, "a write-ahead log was written"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    store = RocksDBStore(path)
    try:
        n = int(store.get(b"n"))
        entries = dict(store.items(b"d"))
        assert sorted(entries) == [b"d%08d" % i for i in range(max(0, n - 99), n + 1)]
        assert all(v == bytes([int(k[1:]) % 251]) * 4096 for k, v in entries.items())
    finally:
        store.close()
