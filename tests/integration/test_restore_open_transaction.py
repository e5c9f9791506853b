"""A stage's store whose checkpoint lies past its changelog partition's stable end keeps its
state across a restart. The stable end is where a read_committed client may read up to: it
stops at a transaction still open there. In the fault run that found this, the open
transaction was the stage's own, committed while the broker was paused, its commit markers not
yet written when a rebalance restored the partition; the restore took the checkpoint past the
stable end for another topic's, wiped the store and restored up to the open transaction, and
two entities' partial CEP matches were lost. Here another producer's transaction is held open
on the changelog partition while the stage commits past it, then the stage restarts on the same
store: the restore must read on until that transaction is settled."""

import threading

import pytest
from confluent_kafka import Producer

from connectors.kafka_config import producer_config, transactional_config
from geoflux.settings import StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.runtime.txn_processor import TransactionalProcessor
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event
from tests.integration.geo_helpers import EventCollector
from tests.integration.replay_helpers import committed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class Counter(TransactionalProcessor):
    """Counts each entity's events; its state travels on the CEP changelog's schema."""

    changelog_schema = "CepState"
    stage = "restore-test"

    def __init__(self, kafka, codec, data_dir) -> None:
        super().__init__(kafka, codec, group=kafka.topic_prefix + "restore-test", instance_id="0",
                         inputs={topic("geo.geofence-events", kafka): "GeofenceEvent"},
                         state=StreamSettings(data_dir=data_dir, store="rocksdb"))
        self.changelog_topic = topic("geo.cep-state", kafka)

    def state_from_record(self, rec: dict) -> dict:
        return {"key": rec["key"], "n": int(rec["patterns"])}

    def state_to_record(self, st: dict) -> dict:
        return {"key": st["key"], "tenant_id": "t", "patterns": str(st["n"]), "format": 2}

    def process(self, records, txn) -> None:
        for r in records:
            key, p = r.rec["entity_id"], r.partition()
            st = {"key": key, "n": (self.state(key, p) or {"n": 0})["n"] + 1}
            self.put_state(p, key, st)
            self.mark_dirty(txn, key, st, p)


def start(stage: Counter) -> threading.Thread:
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    return thread


def test_a_checkpoint_past_an_open_transaction_is_restored_from_not_wiped(kafka_settings, tmp_path):
    kafka, codec = kafka_settings, AvroCodec()
    t_in, t_log = topic("geo.geofence-events", kafka), topic("geo.cep-state", kafka)
    feed = Producer(producer_config(kafka))
    sent = [0]

    def send(n: int) -> None:
        for _ in range(n):
            sent[0] += 1
            e = geofence_event(sent[0], "t", "ENTER", "e1", "g")
            feed.produce(t_in, codec.encode(t_in, "GeofenceEvent", e), key=b"e1", partition=0)
        assert feed.flush(30) == 0

    counts = EventCollector(kafka, codec, "geo.cep-state", "CepState")

    def latest() -> int | None:
        mine = [r for r in counts.snapshot() if r["key"] == "e1"]
        return int(mine[-1]["patterns"]) if mine else None

    foreign = Producer(transactional_config(kafka, kafka.topic_prefix + "foreign"))
    first = Counter(kafka, codec, tmp_path / "state")
    thread = start(first)
    try:
        send(3)
        wait_for(lambda: latest() == 3, 60, what="the first three counted")
        # another writer's transaction, open on the changelog partition: the stable end stops there
        foreign.init_transactions(30)
        foreign.begin_transaction()
        foreign.produce(t_log, codec.encode(t_log, "CepState", {"key": "other", "tenant_id": "t",
                                                                 "patterns": "0", "format": 2}),
                        key=b"other", partition=0)
        assert foreign.flush(30) == 0
        send(2)  # counted and committed past the open transaction: the checkpoint is beyond it
        # (its store is written right after the commit, before the loop looks at stop())
        wait_for(lambda: committed(kafka, "restore-test").get((t_in, 0)) == 5, 60, interval_s=0.5,
                 what="the fifth event committed")
        first.stop()
        thread.join(30)
        assert not thread.is_alive()

        second = Counter(kafka, codec, tmp_path / "state")
        thread = start(second)
        wait_for(lambda: 0 in second.tables, 60, what="the restart's restore to begin")
        # the restore reads on until the open transaction is settled: the partition is not
        # taken up while it stays open (a restore that stopped at the stable end took it up
        # within a second)
        with pytest.raises(AssertionError):
            wait_for(lambda: 0 in second.ready, 5, what="partition 0 restored")
        foreign.abort_transaction(30)
        wait_for(lambda: 0 in second.ready, 60, what="partition 0 restored once the transaction is settled")
        send(1)
        try:
            wait_for(lambda: latest() == 6, 60, what="the sixth event counted on top of five")
        except AssertionError:
            raise AssertionError(f"the count after the restart is {latest()}, not 6: the store "
                                 "lost what was committed past the open transaction") from None
        second.stop()
        thread.join(30)
    finally:
        counts.close()
