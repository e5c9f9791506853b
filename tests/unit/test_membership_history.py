"""An entity's kept history: what it keeps, what it costs, and how it travels in the changelog."""

import io
import json
import sys

import fastavro

from schemas.codec import AvroCodec, schema_text
import random

from streams.entity_history import CHUNK_MS, History, Seen
from streams.evaluator_records import chunk_name, chunk_record, state_from_record, state_to_record
from streams.fence_index import FenceIndex
from streams.membership import EntityState, Membership, MembershipMachine, Update

T0 = 1_764_000_000_000


def history(n: int, step_ms: int = 500) -> History:
    h = History()
    for i in range(n):
        h.append(T0 + i * step_ms, 13.4 + i * 1e-5, 52.5, ("depot",) if i % 40 < 20 else ())
    return h


def test_trim_keeps_the_window_and_the_point_before_it_then_the_cap():
    h = history(100)  # T0 .. T0 + 49_500
    h.trim(10_000, 1000)
    assert h.ts[0] == T0 + 39_000 and h.ts[-1] == T0 + 49_500 and h.known_from_ms == T0 + 39_000
    h.trim(10_000, 5)
    assert list(h.ts) == [T0 + 47_500 + k * 500 for k in range(5)]
    assert h.known_from_ms == T0 + 47_500
    fresh = history(3)
    fresh.trim(10_000, 1000)
    assert fresh.complete and len(fresh) == 3  # nothing dropped: its first point is the first


def test_points_are_small_and_equal_fence_sets_are_shared():
    h = history(1000)
    size = sum(sys.getsizeof(c) for c in (h.ts, h.lon, h.lat, h.inside))
    assert size / len(h) < 40, size
    assert h.inside[0] is h.inside[19] and h.inside[20] is h.inside[39]
    h.insert(5, T0 + 2_250, 0.0, 0.0, ("depot",))
    assert h.inside[5] is h.inside[4]


def test_columns_round_trip_through_the_changelog_schema():
    h = history(300)
    h.trim(60_000, 1000)
    state = EntityState("truck-7", "acme", {"depot": Membership("depot", 3, T0, T0 + 60_000)}, h)
    codec = AvroCodec()
    data = codec.encode("geo.evaluator-state", "EntityState", state_to_record(state))
    back = state_from_record(codec.decode(data, "EntityState"))
    assert back.history == h and back.memberships == state.memberships
    assert back.history.known_from_ms == h.known_from_ms is not None
    assert len(data) < 26 * len(h)  # 24 bytes a point and its runs; a record per point costs 31


def old_schema() -> dict:
    schema = json.loads(schema_text("EntityState"))
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ("history_columns", "history_chunks")]
    return fastavro.parse_schema(schema)


def test_an_older_reader_gets_the_newest_point():
    h = history(50)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(schema_text("EntityState"))),
                               state_to_record(EntityState("e", "t", {}, h)))
    new = fastavro.parse_schema(json.loads(schema_text("EntityState")))
    rec = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), new, old_schema())
    assert rec["history"] == [{"ts_ms": h.ts[-1], "lon": h.lon[-1], "lat": h.lat[-1],
                               "inside": list(h.inside[-1])}]


def test_a_state_written_before_the_columns_is_read_as_incomplete():
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old_schema(), {
        "entity_id": "e", "tenant_id": "t", "memberships": [],
        "history": [{"ts_ms": 5000, "lon": 1.0, "lat": 2.0, "inside": []},
                    {"ts_ms": 6000, "lon": 1.5, "lat": 2.0, "inside": []}]})
    rec = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), old_schema(),
                                     fastavro.parse_schema(json.loads(schema_text("EntityState"))))
    state = state_from_record(rec)
    assert list(state.history) == [Seen(5000, 1.0, 2.0, ()), Seen(6000, 1.5, 2.0, ())]
    # what came before its first kept point is unknown: an update there is not guessed at
    out = MembershipMachine(FenceIndex(), 30_000).apply(state, Update("e", "t", 0, 0, 4000), {})
    assert out.kind == "history_exceeded"


class Changelog:
    """A compacted changelog of one entity, as the evaluator writes it: its chunks beside its
    record, in the Avro the topic carries."""

    def __init__(self) -> None:
        self.codec, self.records = AvroCodec(), {}

    def write(self, state: EntityState) -> int:
        """One transaction's records for `state`; returns the bytes written."""
        split, written = state.history.split(), 0
        for c, start, end in split.write:
            data = self.codec.encode("geo.evaluator-state", "EntityState", chunk_record(state, start, end))
            self.records[chunk_name("e", c)] = data
            written += len(data)
        for c in split.drop:
            del self.records[chunk_name("e", c)]
        self.records["e"] = self.codec.encode("geo.evaluator-state", "EntityState",
                                              state_to_record(state, chunked=True))
        return written + len(self.records["e"])

    def read(self) -> EntityState:
        def chunk(c):
            data = self.records.get(chunk_name("e", c))
            return None if data is None else self.codec.decode(data, "EntityState")
        return state_from_record(self.codec.decode(self.records["e"], "EntityState"), chunk)


def test_a_chunked_history_reads_back_whole_after_appends_late_points_and_trims():
    rng, log, h = random.Random(7), Changelog(), History()
    state, ts = EntityState("e", "t", {}, h), T0
    for step in range(600):
        ts += rng.choice((100, 500, 500, 2_000, 7_000))
        h.append(ts, rng.random(), rng.random(), rng.choice(((), ("a",), ("a", "b"))))
        if step % 7 == 3 and len(h) > 3:  # a late point, somewhere in the window
            i = rng.randrange(1, len(h))
            late = h.ts[i - 1] + 1
            if late < h.ts[i]:
                h.insert(i, late, 0.5, 0.5, ("b",))
        if step % 11 == 5:  # a late point re-derives the fences of the points after it
            h.set_inside(rng.randrange(len(h)), ("c",))
        h.trim(30_000, 1000 if step < 400 else 25)
        if step % 3 == 0:  # several updates in one transaction, sometimes
            continue
        log.write(state)
        back = log.read().history
        assert back == h, step
        # every chunk the record names is there, and no other chunk of it is left behind
        assert {k for k in log.records if k != "e"} == {chunk_name("e", c) for c in h.chunks}
        assert all(c * CHUNK_MS >= h.ts[0] // CHUNK_MS * CHUNK_MS for c in h.chunks)


def test_a_record_per_update_carries_the_newest_chunk_not_the_window():
    log, h = Changelog(), History()
    state = EntityState("e", "t", {}, h)
    sizes = []
    for i in range(400):  # two updates a second, 30 s of lateness: about 60 points kept
        h.append(T0 + i * 500, 13.4 + i * 1e-5, 52.5, ("depot",))
        h.trim(30_000, 1000)
        sizes.append(log.write(state))
    whole = len(AvroCodec().encode("geo.evaluator-state", "EntityState", state_to_record(state)))
    per_update = sum(sizes[200:]) / len(sizes[200:])
    assert len(h) == 62 and whole > 1_500
    assert per_update < whole / 3, (per_update, whole)


def test_an_older_reader_of_a_chunked_record_knows_it_lacks_the_older_points():
    log, h = Changelog(), history(120)  # 60 s at two a second
    log.write(EntityState("e", "t", {}, h))
    buf = io.BytesIO(log.records["e"][5:])  # past the registry's frame
    new = fastavro.parse_schema(json.loads(schema_text("EntityState")))
    older = json.loads(schema_text("EntityState"))
    older["fields"] = [f for f in older["fields"] if f["name"] != "history_chunks"]
    rec = fastavro.schemaless_reader(buf, new, fastavro.parse_schema(older))
    partial = state_from_record(rec).history
    assert not partial.complete and partial.ts[0] == h.ts[h.open_from()] and partial.ts[-1] == h.ts[-1]
    # an update before what it holds is refused, not placed on a guess
    out = MembershipMachine(FenceIndex(), 30_000).apply(
        state_from_record(rec), Update("e", "t", 0, 0, partial.ts[0] - 1), {})
    assert out.kind == "history_exceeded"
