"""The CEP entity stage's batch, without a broker (the stage's Kafka clients are built but never
reach one; the producer is replaced by one that keeps what it is handed): what a batch that
spans more event time than the lateness releases before it commits."""

from __future__ import annotations

import json

import pytest

from geoflux.settings import KafkaSettings, StreamSettings
from schemas.codec import AvroCodec
from streams.cep.patterns import parse_pattern
from streams.cep.stage import CepStage
from streams.runtime.txn_processor import Record, Txn


class Kept:
    """Simulated producer: keeps (topic, key, value) of each record it is handed."""

    def __init__(self) -> None:
        self.records: list[tuple[str, object, bytes | None]] = []

    def produce(self, topic, key=None, value=None, **_kw) -> None:
        self.records.append((topic, key, value))

    def poll(self, *_a) -> int:
        return 0


class Msg:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._t, self._p, self._o = topic, partition, offset

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o


@pytest.fixture
def stage(tmp_path):
    st = CepStage(KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="u."), AvroCodec(), "entity")
    st.state_settings = StreamSettings(data_dir=tmp_path)
    st.producer = Kept()
    st.patterns["p"] = parse_pattern({"pattern_id": "p", "tenant_id": "t", "severity": "info", "kind": "count",
                                      "within_s": 60, "at_least": 2, "lateness_s": 1, "event": {"event_type": "EXIT"}})
    st._table_for(0)
    st.ready.add(0)
    # simulated: the input clock is the newest event time read (one busy partition)
    st.input_clock = lambda _wall: max((ts for ts, _seen in st.partition_clock.values()), default=None)
    yield st
    st.consumer.close()


def event(i: int, entity: str, ts: int) -> dict:
    return {"event_id": f"{i:032x}", "event_type": "EXIT", "entity_id": entity, "geofence_id": "g", "geofence_version": 1,
            "tenant_id": "t", "lon": 0.0, "lat": 0.0, "ts_ms": ts, "source": "s", "reason": None, "produced_ms": ts,
            "attributes": {}}


def batch(st: CepStage, events: list[dict]) -> Txn:
    txn = st._open = Txn()
    st._touched = {}
    st.process([Record(Msg(st.t_events, 0, i), e) for i, e in enumerate(events)], txn)
    return txn


def test_events_the_batch_moved_the_clock_a_lateness_past_are_released_and_matched_before_it_commits(stage):
    txn = batch(stage, [event(1, "a", 0), event(2, "a", 100), event(3, "b", 5_000)])
    matches = [r for r in stage.producer.records if r[0] == stage.t_matches]
    assert len(matches) == 1 and matches[0][1] == "t/a|g"  # a's two EXITs: released at clock 5,000
    held = {key: json.loads(ks.to_json())["b"] for key, (_p, ks) in txn.dirty.items()}
    assert held["t/a"] == [[1000, 100, []]]  # written once, with nothing held any more
    assert len(held["t/b"][0][2]) == 1  # b's own event is a lateness ahead of the clock: still held


def test_a_batch_within_the_lateness_holds_everything_for_the_tick(stage):
    txn = batch(stage, [event(1, "a", 0), event(2, "a", 100), event(3, "b", 900)])
    assert not [r for r in stage.producer.records if r[0] == stage.t_matches]
    assert all(len(json.loads(ks.to_json())["b"][0][2]) >= 1 for _p, ks in txn.dirty.values())
