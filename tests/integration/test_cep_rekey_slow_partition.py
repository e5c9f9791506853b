"""The CEP re-key's merge when one input partition is slow to deliver its records.

Draining a backlog, the consumer can serve some partitions for seconds before another one
delivers anything. The re-key counted such a partition as read twice over: before its first
record (its position is unknown until one is read), and in the transaction that read its
records at last, whose tick ran before they were processed (their position already past
them). Either way the other partitions' records were written first, and the slow one's older
records after them, later than the entity stage's lateness (dead-lettered as `late` in 805-888
of 30,000 events in some of the CEP benchmark's drains). Here partition 0, holding the oldest
records, is kept from fetching for a few seconds right after its assignment, and every
transaction ticks; every record must still come out in merged event-time order."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.kafka_config import (
    admin_config,
    consumer_config,
    producer_config,
    transactional_config,
)
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.rekey import CepRekeyStage
from tests.conftest import wait_for
from tests.integration.geo_helpers import EventCollector

pytestmark = [pytest.mark.kafka]

EVENTS, ENTITIES, STEP_MS = 300, 5, 200  # a minute of event time over every partition


class SlowFirstPartition(CepRekeyStage):
    """Partition 0 fetches nothing for `SLOW_S` after its assignment (as a consumer serving
    other partitions first would), and a partition stalls after half a second, so the slow
    start outlasts the stall limit many times over."""

    MAX_STALL_S = 0.5
    SLOW_S = 4.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_at: float | None = None
        # a tick in every transaction: the one that reads the slow partition's records at last
        # ticks too, before they are processed (their position already past them)
        self.tick_interval_s = 0.0

    def _finish_restore(self, partition: int) -> None:
        super()._finish_restore(partition)  # resumes the partition: paused again at once
        if partition == 0 and self.resume_at is None:
            self.consumer.pause([TopicPartition(self.t_in, 0)])
            self.resume_at = time.monotonic() + self.SLOW_S

    def step(self) -> None:
        if self.resume_at and time.monotonic() >= self.resume_at:
            self.consumer.resume([TopicPartition(self.t_in, 0)])
            self.resume_at = 0.0
        super().step()


def events(t0: int, partitions: int) -> list[tuple[int, dict]]:
    """(partition, event): event i at t0 + i * STEP_MS in partition i % partitions, so every
    partition holds a share of the whole minute and partition 0 the oldest record."""
    return [(i % partitions, {
        "event_id": f"{i:032x}", "event_type": "ENTER" if i % 2 == 0 else "EXIT",
        "entity_id": f"e{i % ENTITIES}", "geofence_id": f"g{i % 7}", "geofence_version": 1,
        "tenant_id": "t", "lon": 0.0, "lat": 0.0, "ts_ms": t0 + i * STEP_MS, "source": f"loc:{i}",
        "reason": None, "produced_ms": None, "attributes": {}}) for i in range(EVENTS)]


def publish(settings, codec: AvroCodec, records: list[tuple[int, dict]]) -> None:
    """(partition, event) pairs onto `geo.geofence-events`, each into its partition."""
    t = topic("geo.geofence-events", settings)
    producer = Producer(producer_config(settings))
    for partition, e in records:
        producer.produce(t, codec.encode(t, "GeofenceEvent", e), key=e["geofence_id"], partition=partition)
    assert producer.flush(60) == 0


def rekeyed(settings, codec: AvroCodec, stage: CepRekeyStage, n: int, what: str,
            also=lambda: True) -> list[dict]:
    """Runs the stage until `n` events are on `geo.cep-input` (read_committed, in read order)
    and `also()` holds; returns them."""
    out = EventCollector(settings, codec, "geo.cep-input")
    runner = threading.Thread(target=stage.run, kwargs={"max_seconds": 120}, daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(out.snapshot()) >= n, 90, what=what)
        wait_for(also, 30, what=f"{what}: the test's own condition")
    finally:
        stage.stop()
        runner.join(30)
        out.close()
    return out.snapshot()


def test_a_partition_slow_to_deliver_still_holds_the_merge(kafka_settings):
    codec = AvroCodec()
    t0 = int(time.time() * 1000) - 3_600_000
    backlog = events(t0, kafka_settings.partitions)
    publish(kafka_settings, codec, backlog)

    stage = SlowFirstPartition(kafka_settings, codec)
    written = rekeyed(kafka_settings, codec, stage, EVENTS, "every event re-keyed",
                      lambda: stage.resume_at == 0.0)
    assert sorted(r["event_id"] for r in written) == sorted(e["event_id"] for _p, e in backlog)
    # each entity's events, in the order the entity stage reads them (one partition per key),
    # never more than the merge's alignment behind the newest one written before them
    newest: dict[str, int] = {}
    behind = []
    for r in written:
        ahead = newest.get(r["entity_id"], r["ts_ms"])
        if r["ts_ms"] < ahead - CepRekeyStage.ALIGN_MS:
            behind.append((r["event_id"], ahead - r["ts_ms"]))
        newest[r["entity_id"]] = max(ahead, r["ts_ms"])
    assert not behind, f"{len(behind)} events written after newer ones of their entity, first {behind[:3]}"


@pytest.mark.parametrize("committed_first", [True, False], ids=["record-then-abort", "only-an-abort"])
def test_a_partition_ending_in_an_aborted_transaction_does_not_hold_the_merge(kafka_settings, committed_first):
    """Aborted records and their marker sit past a partition's last committed record: a
    read_committed consumer never reads them, so a partition ending so is read to its end
    though its high watermark lies several offsets ahead. Counted as unread, it held every
    other partition's records past its last one back until it delivered again."""
    codec = AvroCodec()
    t_in = topic("geo.geofence-events", kafka_settings)
    t0 = int(time.time() * 1000) - 3_600_000
    backlog = [(p, e) for p, e in events(t0, kafka_settings.partitions) if p != 0]
    first = events(t0, 1)[0][1]  # partition 0: one committed record, the oldest, then an abort
    publish(kafka_settings, codec, [(0, first)] * committed_first + backlog)
    aborter = Producer(transactional_config(kafka_settings, f"{kafka_settings.topic_prefix}aborter"))
    aborter.init_transactions(30)
    aborter.begin_transaction()
    for i in range(3):
        aborter.produce(t_in, codec.encode(t_in, "GeofenceEvent", {**first, "event_id": f"{i:032x}"[::-1],
                                                                   "ts_ms": t0 + 1}), partition=0)
    aborter.abort_transaction(30)

    want = [first["event_id"]] * committed_first + [e["event_id"] for _p, e in backlog]
    written = rekeyed(kafka_settings, codec, CepRekeyStage(kafka_settings, codec), len(want),
                      "every committed event re-keyed")
    assert sorted(r["event_id"] for r in written) == sorted(want)


def test_a_committed_offset_retention_deleted_past_does_not_hold_the_merge(kafka_settings):
    """The group committed offset 2 of partition 0, and retention has since deleted the
    partition's records up to its end: reading starts at the log's start, where nothing is left
    to read. Counted from the committed offset, the partition looked unread for good, and with
    nothing read from it the merge wrote nothing at all."""
    codec = AvroCodec()
    t_in = topic("geo.geofence-events", kafka_settings)
    t0 = int(time.time() * 1000) - 3_600_000
    records = events(t0, kafka_settings.partitions)
    publish(kafka_settings, codec, records)
    group = Consumer(consumer_config(kafka_settings, kafka_settings.topic_prefix + "geoflux-cep-rekey"))
    group.commit(offsets=[TopicPartition(t_in, 0, 2)], asynchronous=False)
    group.close()
    end = EVENTS // kafka_settings.partitions
    admin = AdminClient(admin_config(kafka_settings))
    for fut in admin.delete_records([TopicPartition(t_in, 0, end)]).values():
        assert fut.result(30).low_watermark == end  # the partition's log now starts at its end

    want = sorted(e["event_id"] for p, e in records if p != 0)
    written = rekeyed(kafka_settings, codec, CepRekeyStage(kafka_settings, codec), len(want),
                      "the other partitions' events re-keyed")
    assert sorted(r["event_id"] for r in written) == want
