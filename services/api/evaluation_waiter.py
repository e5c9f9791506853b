"""Matches REST evaluate requests with the evaluator's answers on `geo.evaluations`.

The consumer starts at the end of the topic before the API accepts requests, so every answer
to a request of this process is seen; answers for other API instances are ignored.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from connectors.kafka_config import consumer_config
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
        parts = list(md.topics[self.topic].partitions)
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_END) for p in parts])
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evaluation-waiter", daemon=True)
        self._thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self._consumer.consume(500, 0.1)
            self._ready.set()  # the first fetch has resolved OFFSET_END to a position
            for m in msgs:
                if m.error() or m.value() is None:
                    continue
                rec = self.codec.decode(m.value(), "EvaluationResult")
                with self._lock:
                    entry = self._futures.pop(rec["request_id"], None)
                if entry:
                    loop, fut = entry
                    loop.call_soon_threadsafe(lambda f=fut, r=rec: f.done() or f.set_result(r))

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

