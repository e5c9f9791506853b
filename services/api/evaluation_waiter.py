"""Matches REST evaluate requests with the evaluator's answers on `geo.evaluations`.

The consumer starts at the end of the topic before the API accepts requests, so every answer
to a request of this process is seen; answers for other API instances (their request ids are
the record keys) are skipped without being decoded.

Each process asks for its answers on one partition (`reply_partition`, chosen at random), so
the evaluator's transaction writes answers to as few partitions as there are API processes
asking. It still reads every partition: an evaluator of an earlier release ignores the ask and
answers on the request id's partition.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.kafka_config import consumer_config
from geoflux.errors import ValidationError
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec


class EvaluationWaiter:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self.codec = codec
        self.topic = topic("geo.evaluations", kafka)
        self._futures: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(consumer_config(kafka, f"geoflux-api-{uuid.uuid4().hex[:8]}"))
        md = self._consumer.list_topics(self.topic, timeout=kafka.request_timeout_s)
        # positions at the ends as of now, not OFFSET_END: that is resolved at the first fetch,
        # and a reply written before it (to a request made right after start) was skipped
        deadline = time.monotonic() + kafka.request_timeout_s
        self.reply_partition = random.choice(sorted(md.topics[self.topic].partitions))
        self._consumer.assign([TopicPartition(self.topic, p, self._end(p, deadline))
                               for p in md.topics[self.topic].partitions])
        self._thread = threading.Thread(target=self._run, name="evaluation-waiter", daemon=True)
        self._thread.start()

    def _end(self, partition: int, deadline: float) -> int:
        while True:  # a topic just created has no leader for a moment
            try:
                return self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=max(0.1, deadline - time.monotonic()))[1]
            except KafkaException:  # NOT_LEADER_FOR_PARTITION is not flagged retriable here
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)  # the leader is being elected: ask again

    def _run(self) -> None:
        while not self._stop.is_set():
            # poll() returns at the first reply; consume(n, t) would wait out t for a full batch,
            # and that wait was added to every request's latency
            first = self._consumer.poll(0.1)
            if first is None:
                continue
            msgs = [first, *self._consumer.consume(500, 0)]
            ready: dict[asyncio.AbstractEventLoop, list] = {}
            for m in msgs:
                if m.error() or m.value() is None:
                    continue
                # the key is the request id: answers to other API processes are not decoded
                key = (m.key() or b"").decode(errors="replace")
                if key not in self._futures:
                    continue
                try:
                    rec = self.codec.decode(m.value(), "EvaluationResult")
                except ValidationError:  # not the evaluator's record: the request keeps waiting
                    continue
                with self._lock:
                    entry = self._futures.pop(key, None)
                if entry is None:  # forgotten meanwhile
                    continue
                loop, fut = entry
                ready.setdefault(loop, []).append((fut, rec))
            for loop, items in ready.items():  # one wake-up of the loop per batch
                loop.call_soon_threadsafe(_resolve, items)

    def expect(self, request_id: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            self._futures[request_id] = (loop, fut)
        return fut

    def forget(self, request_id: str) -> None:
        with self._lock:
            self._futures.pop(request_id, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _resolve(items: list[tuple[asyncio.Future, dict]]) -> None:
    for fut, rec in items:
        if not fut.done():  # the request may have timed out meanwhile
            fut.set_result(rec)
