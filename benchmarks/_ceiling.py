"""The ceilings a stage's throughput is compared with, measured in the same run: the same
transactional shell with the same batch size, decoding every input record and producing its
bytes on unchanged, one transaction per batch — a stage minus its work; the same shell as a
running process forwarding a share of a paced feed, for latency; and a bare read of a topic by
one consumer, for stages that only read (a sink, a restore)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka_admin import admin_client
from connectors.kafka_config import consumer_config
from geoflux.settings import KafkaSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.runtime.txn_processor import Txn, TransactionalProcessor


class PassThrough(TransactionalProcessor):
    stage = "bench-passthrough"

    def __init__(self, settings: KafkaSettings, codec: AvroCodec, logical_input: str, schema: str,
                 out_topic: str, n: int, max_batch: int, poll_timeout_s: float) -> None:
        super().__init__(settings, codec, group=settings.topic_prefix + "bench-passthrough", instance_id="0",
                         inputs={topic(logical_input, settings): schema}, max_batch=max_batch,
                         poll_timeout_s=poll_timeout_s)
        self.out_topic, self.seen, self.first_at, self.done_at, self.n = out_topic, 0, None, None, n

    def process(self, records: list, txn: Txn) -> None:
        self.first_at = self.first_at or time.monotonic()
        for r in records:
            self.produce(txn, self.out_topic, r.key(), r.raw())
        self.seen += len(records)
        if self.seen >= self.n:
            self.running, self.done_at = False, time.monotonic()


def pass_through_ceiling(settings: KafkaSettings, codec: AvroCodec, logical_input: str, schema: str,
                         n: int, max_batch: int, poll_timeout_s: float = 0.02) -> float:
    """Records per second through the pass-through stage, over `n` records already on the input."""
    out = settings.topic_prefix + "bench.passthrough"
    create_output_topic(admin_client(settings), settings, out)
    stage = PassThrough(settings, codec, logical_input, schema, out, n, max_batch, poll_timeout_s)
    stage.run(max_seconds=600)  # the stage stops itself once it has passed n records on
    if stage.done_at is None:
        raise SystemExit(f"the pass-through stage passed {stage.seen} of {n} records in 600 s")
    return n / (stage.done_at - stage.first_at)


def create_output_topic(admin: AdminClient, settings: KafkaSettings, name: str) -> None:
    """The topic a pass-through forwards to, partitioned as its input. The caller holds `admin`
    until this returns: a client dropped before the results are in ends them (_DESTROY)."""
    for f in admin.create_topics([NewTopic(name, settings.partitions, 1)]).values():
        f.result()


class SampledPassThrough(TransactionalProcessor):
    """The latency ceiling: the shell, in its own process, forwarding one input record in
    `every` unchanged (about the share of a stage's inputs that make an output) until stopped."""

    stage = "bench-latency-passthrough"

    def __init__(self, settings: KafkaSettings, codec: AvroCodec, logical_input: str, schema: str,
                 out_topic: str, every: int, group: str, max_batch: int, poll_timeout_s: float) -> None:
        super().__init__(settings, codec, group=group, instance_id="0",
                         inputs={topic(logical_input, settings): schema}, max_batch=max_batch,
                         poll_timeout_s=poll_timeout_s)
        self.out_topic, self.every = out_topic, every

    def process(self, records: list, txn: Txn) -> None:
        for r in records:
            if r.offset() % self.every == 0:
                self.produce(txn, self.out_topic, r.key(), r.raw())


def run_sampled_pass_through(settings: KafkaSettings, logical_input: str, schema: str, out_topic: str,
                             every: int, group: str, max_batch: int, poll_timeout_s: float) -> None:
    """A process's target: the latency ceiling's stage, started where `group` committed, run until
    the process is terminated (with the workers' collector thresholds, as a worker is)."""
    StreamSettings().apply_gc_threshold()
    SampledPassThrough(settings, AvroCodec(), logical_input, schema, out_topic, every, group, max_batch,
                       poll_timeout_s).run()


def commit_at_end(settings: KafkaSettings, group: str, t: str) -> None:
    """Starts `group` at the end of `t`: a latency ceiling measures the feed to come, not the
    records earlier runs left on the topic."""
    c = Consumer(consumer_config(settings, group))
    try:
        ends = [TopicPartition(t, p, c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1])
                for p in range(settings.partitions)]
        c.commit(offsets=ends, asynchronous=False)
    finally:
        c.close()


def read_topic(settings: KafkaSettings, t: str, on_record: Callable | None = None) -> tuple[float, int]:
    """Seconds and records: one read_committed consumer reading every partition of `t` from
    the beginning to its end, calling `on_record` on each record (e.g. to decode it)."""
    c = Consumer(consumer_config(settings, f"bench-read-{uuid.uuid4().hex[:8]}",
                                 **{"enable.partition.eof": True}))
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    t0, n, eof = time.monotonic(), 0, set()
    try:
        while len(eof) < settings.partitions:
            for m in c.consume(10_000, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                n += 1
                if on_record is not None:
                    on_record(m)
        return time.monotonic() - t0, n
    finally:
        c.close()
