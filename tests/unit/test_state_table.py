"""A partition table keeps exactly the index entries its current states derive, whatever bytes
the index keys hold, and a restore starts where the store's checkpoint allows (parametrised
over the store backends)."""

import json

import pytest

from streams.state import open_store, store_kinds
from streams.state.restore import start_offset
from streams.state.table import CHECKPOINT, PartitionTable

# shaped like the evaluator's: the state key follows a NUL byte in every entry
IN_G1, IN_G2 = b"mt/g1\x00t/e1", b"mt/g2\x00t/e1"
TIMER, CELL = b"t0000000000005000\x00t/e1", b"gt\x0018000\x0009000\x00t/e1"


@pytest.fixture(params=store_kinds())
def table(request, tmp_path):
    store = open_store(request.param, tmp_path / "store")
    yield PartitionTable(store, 0)
    store.close()


def index(table) -> list[bytes]:
    return list(table.index(b""))


def test_a_changed_state_keeps_only_its_current_index_entries(table):
    table.apply([("t/e1", b"v1", [IN_G1, TIMER, CELL])], 1)
    table.apply([("t/e1", b"v2", [IN_G2, CELL])], 2)
    assert index(table) == sorted([IN_G2, CELL])  # the fence left and the fired timer are gone
    table.apply([("t/e1", b"v3", [IN_G2, CELL])], 3)  # unchanged entries stay
    assert index(table) == sorted([IN_G2, CELL]) and table.raw("t/e1") == b"v3"


def test_a_tombstone_drops_the_state_and_every_index_entry(table):
    table.apply([("t/e1", b"v1", [IN_G1, TIMER]), ("t/e2", b"w", [b"mt/g1\x00t/e2"])], 1)
    table.apply([("t/e1", None, None)], 2)
    assert table.raw("t/e1") is None and index(table) == [b"mt/g1\x00t/e2"]
    assert list(table.keys()) == ["t/e2"]


def test_several_versions_of_a_key_in_one_batch_leave_the_last_ones_entries_only(table):
    # a restore slice holds every version the changelog has not compacted yet
    table.apply([("t/e1", b"v0", [CELL])], 1)
    table.apply([("t/e1", b"v1", [IN_G1, TIMER]), ("\x00fences", b"{}", None),
                 ("t/e1", b"v2", [IN_G2])], 4)
    assert table.raw("t/e1") == b"v2" and index(table) == [IN_G2]
    assert table.meta("fences") == b"{}" and table.checkpoint()["offset"] == 4


def test_a_checkpoint_says_where_a_tail_restore_starts(table):
    assert start_offset(table, True, 0, 10, 1_000) is None  # no checkpoint: in full
    table.apply([("t/e1", b"v", [IN_G1])], 7)
    now = table.checkpoint()["written_ms"]
    assert start_offset(table, True, 0, 10, now) == 7
    assert start_offset(table, False, 0, 10, now) is None  # not kept across restarts anyway
    assert start_offset(table, True, 0, 5, now) is None  # past the end: the topic was recreated
    assert start_offset(table, True, 8, 10, now) is None  # records deleted under the store
    assert start_offset(table, True, 0, 10, now + 86_400_001) is None  # tombstones may be gone


@pytest.mark.parametrize("raw", [b"garbage", json.dumps({"offset": 7, "written_ms": 0}).encode(),
                                 json.dumps({"offset": "7", "format": 2}).encode()])
def test_an_unreadable_or_older_format_checkpoint_means_a_full_restore(table, raw):
    # format 1 stores split their reverse entries at NUL bytes and kept stale index entries
    table.store.write([(CHECKPOINT, raw)])
    assert start_offset(table, True, 0, 10, 0) is None
