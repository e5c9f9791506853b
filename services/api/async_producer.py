"""The REST evaluate path's producer: `produce` returns an asyncio future that completes when
the broker has acknowledged the record (acks=all, idempotent), or fails with TransientError.

Before it, each request handed `ReliableProducer.deliver` to a worker thread that polled until
its own record was acknowledged: the default pool (a handful of threads) capped the requests
in flight, and every one of them polled the same producer. Here the event loop only queues
(librdkafka batches what concurrent requests queue within linger.ms into one produce request)
and one thread serves the delivery reports, completing each poll's futures with one wake-up
of the loop.
"""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import Producer

from connectors.kafka_config import producer_config
from geoflux.errors import TransientError
from geoflux.settings import KafkaSettings


class AsyncProducer:
    def __init__(self, settings: KafkaSettings, **overrides) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings, **overrides))
        self._done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evaluate-producer", daemon=True)
        self._thread.start()

    def produce(self, topic: str, value: bytes, key: str) -> asyncio.Future:
        """Queues the record; the future's result is None once it is acknowledged."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def on_delivery(err, msg, loop=loop, fut=fut) -> None:  # on the poll thread
            self._done.append((loop, fut, None if err is None else f"{msg.topic()}: {err.str()}"))

        try:
            self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        except BufferError:
            # the local queue is full: the broker is not keeping up; never block the event loop
            raise TransientError("the API's produce queue is full; retry shortly") from None
        return fut

    def _run(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)  # returns as soon as it has served delivery reports
            if self._done:
                done, self._done = self._done, []
                by_loop: dict[asyncio.AbstractEventLoop, list] = {}
                for loop, fut, err in done:
                    by_loop.setdefault(loop, []).append((fut, err))
                for loop, items in by_loop.items():
                    if not loop.is_closed():
                        loop.call_soon_threadsafe(_complete, items)

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(5)
        self._producer.flush(timeout_s)  # what is queued still goes out (the requests are gone)


def _complete(items: list[tuple[asyncio.Future, str | None]]) -> None:
    for fut, err in items:
        if fut.done():  # the request gave up (timeout, client gone)
            continue
        if err is None:
            fut.set_result(None)
        else:
            fut.set_exception(TransientError(f"the update was not acknowledged: {err}"))
