"""`TopicReader.applied_through_now`: a follower thread's reader says when every record written
before the question has been applied — over plain and transactional writes (whose last offset
is a commit marker no record carries) — and says no, in time, while a record is still unread."""

import threading
import time
import uuid

import pytest
from confluent_kafka import Producer

from connectors.kafka_config import producer_config, transactional_config
from connectors.topic_reader import TopicReader
from schemas.catalogue import topic
from schemas.codec import AvroCodec

pytestmark = [pytest.mark.kafka]


def config_record(i: int) -> dict:
    return {"kind": "channel", "id": f"c{i}", "tenant_id": "acme", "version": 1,
            "body": "{}", "updated_ms": int(time.time() * 1000), "deleted": False}


def test_applied_through_now_over_plain_and_transactional_writes(kafka_settings):
    codec, t = AvroCodec(), topic("alerts.channels", kafka_settings)
    seen: set[str] = set()
    reader = TopicReader(kafka_settings, t, "ConfigRecord", codec,
                         lambda key, rec, _m: seen.add(key) or True).load().follow()
    plain = Producer(producer_config(kafka_settings))
    txn = Producer(transactional_config(kafka_settings, f"reader-test-{uuid.uuid4().hex[:8]}"))
    txn.init_transactions(30)
    try:
        assert reader.applied_through_now(10) and seen == set()  # an empty topic is read through
        for i in range(20):
            if i % 2:
                txn.begin_transaction()
                txn.produce(t, codec.encode(t, "ConfigRecord", config_record(i)), key=f"acme/c{i}")
                txn.commit_transaction(30)
            else:
                plain.produce(t, codec.encode(t, "ConfigRecord", config_record(i)), key=f"acme/c{i}")
                assert plain.flush(30) == 0
            assert reader.applied_through_now(10), f"record {i} not applied in time"
            assert f"acme/c{i}" in seen  # applied when the answer came, not later
        # a transaction left open holds the end of its partition: not read through, and the
        # answer comes at the deadline instead of never
        txn.begin_transaction()
        txn.produce(t, codec.encode(t, "ConfigRecord", config_record(99)), key="acme/c99")
        txn.flush(30)
        t0 = time.monotonic()
        assert not reader.applied_through_now(1.0)
        assert time.monotonic() - t0 < 5
        committer = threading.Timer(0.5, lambda: txn.commit_transaction(30))
        committer.start()
        assert reader.applied_through_now(15) and "acme/c99" in seen
        committer.join()
    finally:
        reader.close()


def test_load_reads_every_committed_record_and_returns_without_waiting_out_idle_fetches(kafka_settings):
    """`load()` knows where each partition ends before it reads, so an empty partition, or one
    whose last record has arrived, is done at once; a partition ending in a commit marker is
    still read to that marker; records of a transaction still open are not read."""
    codec = AvroCodec()
    t = topic("alerts.silences", kafka_settings)
    plain = Producer(producer_config(kafka_settings))
    txn = Producer(transactional_config(kafka_settings, f"reader-load-{uuid.uuid4().hex[:8]}"))
    txn.init_transactions(30)

    def load() -> tuple[set[str], float]:
        seen: set[str] = set()
        t0 = time.monotonic()
        reader = TopicReader(kafka_settings, t, "ConfigRecord", codec,
                             lambda key, rec, _m: seen.add(key) or True).load()
        took = time.monotonic() - t0
        reader.close()
        return seen, took

    empty, _ = load()
    assert empty == set()
    for i in range(12):  # plain records, so no partition ends in a marker yet
        plain.produce(t, codec.encode(t, "ConfigRecord", config_record(i)), key=f"acme/p{i}", partition=i % 3)
    assert plain.flush(30) == 0
    seen, _ = load()
    assert seen == {f"acme/p{i}" for i in range(12)}
    txn.begin_transaction()
    for i in range(4):
        txn.produce(t, codec.encode(t, "ConfigRecord", config_record(i)), key=f"acme/t{i}", partition=0)
    txn.commit_transaction(30)
    txn.begin_transaction()  # left open while loading: its record is not committed
    txn.produce(t, codec.encode(t, "ConfigRecord", config_record(9)), key="acme/open", partition=1)
    txn.flush(30)
    try:
        seen, _ = load()
        assert seen == {f"acme/p{i}" for i in range(12)} | {f"acme/t{i}" for i in range(4)}
    finally:
        txn.abort_transaction(30)
