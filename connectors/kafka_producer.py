"""A confluent-kafka producer that is idempotent, waits for all replicas, and raises on failure.

librdkafka reports delivery asynchronously; a report that is only logged is an acknowledged
record nobody checks. `Producer.flush_or_raise` turns every failed report into an exception.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer

from connectors.kafka_config import producer_config
from geoflux.errors import PermanentError, TransientError
from geoflux.settings import KafkaSettings


@dataclass
class DeliveryReport:
    delivered: int = 0
    errors: list[tuple[str, KafkaError]] = field(default_factory=list)


class ReliableProducer:
    """`send` queues; `flush_or_raise` blocks until every queued record is acknowledged."""

    def __init__(self, settings: KafkaSettings, **overrides) -> None:
        self.settings = settings
        self._producer = Producer(producer_config(settings, **overrides))
        self._report = DeliveryReport()

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._report.delivered += 1
        else:
            self._report.errors.append((msg.topic(), err))

    def send(self, topic: str, value: bytes | None, key: str | bytes | None = None,
             headers: dict[str, bytes] | None = None, timestamp_ms: int | None = None) -> None:
        kwargs = {"on_delivery": self._on_delivery}
        if headers:
            kwargs["headers"] = list(headers.items())
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, **kwargs)
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def deliver(self, records: list[tuple[str, bytes | None, str | bytes | None]],
                timeout_s: float = 30.0) -> None:
        """Sends (topic, value, key) records and returns once all of *these* are acknowledged.

        Safe to call from several threads at once: each call tracks only its own records.
        """
        lock = threading.Lock()
        state = {"left": len(records), "errors": []}

        def on_delivery(err, msg):
            with lock:
                state["left"] -= 1
                if err is not None:
                    state["errors"].append((msg.topic(), err))

        for topic, value, key in records:
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        deadline = time.monotonic() + timeout_s
        while state["left"] > 0 and time.monotonic() < deadline:
            self._producer.poll(0.01)
        if state["errors"]:
            topic, err = state["errors"][0]
            raise TransientError(f"{len(state['errors'])} record(s) not acknowledged; first: "
                                 f"{topic}: {err.str()}")
        if state["left"] > 0:
            raise TransientError(f"{state['left']} record(s) unacknowledged after {timeout_s:.0f}s "
                                 f"(is the broker at {self.settings.bootstrap} up?)")

    def flush_or_raise(self, timeout_s: float = 30.0) -> int:
        remaining = self._producer.flush(timeout_s)
        report, self._report = self._report, DeliveryReport()
        if report.errors:
            topic, err = report.errors[0]
            cls = TransientError if err.retriable() or not err.fatal() else PermanentError
            raise cls(f"{len(report.errors)} record(s) not acknowledged; first: {topic}: "
                      f"{err.str()}")
        if remaining:
            raise TransientError(f"{remaining} record(s) still unacknowledged after "
                                 f"{timeout_s:.0f}s (is the broker at {self.settings.bootstrap} up?)")
        return report.delivered
