"""Writes a job submission's records atomically: one Kafka transaction holds the request and its
"accepted" status, so a reader (read_committed: the job worker, every API's status view) sees
both or neither. The request is therefore durable before the status is visible, and the
worker cannot read a request whose status has not been written yet, so nothing it writes can
be overtaken by "accepted". A failed write leaves nothing visible (the transaction aborts).

Concurrent submissions share transactions (group commit): a writer thread takes every call
queued while the previous transaction was committing. A group that fails on one record (too
large) is written again call by call, so only that call fails.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

import structlog
from confluent_kafka import KafkaError, KafkaException, Producer

from connectors.kafka_config import transactional_config
from geoflux.errors import PermanentError, TransientError
from geoflux.settings import KafkaSettings

log = structlog.get_logger("geoflux.jobs.writer")
Record = tuple[str, bytes | None, str]  # topic, value, key
MAX_GROUP = 500


class RecordTooLarge(PermanentError):
    error_class = "record-too-large"


@dataclass
class _Call:
    records: list[Record]
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None


def _convert(err: KafkaError, what: str) -> Exception:
    code = err.code()
    if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
        return RecordTooLarge(f"{what}: the record is larger than the broker accepts ({err.str()})")
    if code in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION):
        return TransientError(f"{what}: topic missing ({err.str()}); run `geoflux topics apply`")
    return TransientError(f"{what}: {err.str()}")


class AtomicWriter:
    def __init__(self, kafka: KafkaSettings, name: str) -> None:
        self.kafka = kafka
        self.transactional_id = f"{kafka.topic_prefix}geoflux-{name}-{uuid.uuid4().hex[:12]}"
        self.timeout_s = kafka.request_timeout_s
        self._producer: Producer | None = None
        self._queue: list[_Call] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"writer-{name}", daemon=True)
        self._thread.start()

    def write(self, records: list[Record]) -> None:
        """Returns once `records` are committed together; raises TransientError (nothing
        written; the broker is unreachable, slow, or a topic is missing) or RecordTooLarge."""
        call = _Call(records)
        with self._cv:
            if self._stopped:
                raise TransientError("the job writer is closed")
            self._queue.append(call)
            self._cv.notify()
        # the writer decides every call within about three of its timeouts (init, produce,
        # commit); past that the outcome is unknown, which a retry with the same key resolves
        if not call.done.wait(self.timeout_s * 4):
            raise TransientError("the submission was not confirmed in time; its outcome is unknown: "
                                 "retry with the same Idempotency-Key")
        if call.error is not None:
            raise call.error

    def close(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()
        self._thread.join(self.timeout_s * 4)

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopped:
                    self._cv.wait()
                if self._stopped and not self._queue:
                    return
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                self._commit(group)
            except RecordTooLarge:
                for call in group:  # find the call that cannot be written; the others can
                    try:
                        self._commit([call])
                    except Exception as exc:
                        call.error = exc
            except Exception as exc:
                for call in group:
                    call.error = exc
            for call in group:
                call.done.set()

    def _ready_producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(transactional_config(self.kafka, self.transactional_id, **{
                # a missing topic fails the write in seconds instead of librdkafka's 30 s
                "topic.metadata.propagation.max.ms": 5000}))
            try:
                # with the same transactional id, this also aborts a transaction an earlier
                # producer of ours left open: it can never commit later
                producer.init_transactions(self.timeout_s)
            except KafkaException as exc:
                raise _convert(exc.args[0], "starting the job writer") from exc
            self._producer = producer
        return self._producer

    def _commit(self, group: list[_Call]) -> None:
        producer = self._ready_producer()
        failures: list[KafkaError] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                failures.append(err)

        try:
            producer.begin_transaction()
            for call in group:
                for topic, value, key in call.records:
                    producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            producer.commit_transaction(self.timeout_s)
        except (KafkaException, BufferError) as exc:
            err = exc.args[0] if isinstance(exc, KafkaException) else None
            self._abort()
            cause = failures[0] if failures else err
            if cause is None:
                raise TransientError(f"job writer: {exc}") from exc
            raise _convert(cause, "writing the job") from exc

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            # the next producer, with the same transactional id, fences and aborts what is open
            log.warning("job writer abort failed; starting a new producer", error=str(exc))
            self._producer = None
