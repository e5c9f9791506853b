"""The evaluate path's producer: a record the broker never acknowledges fails its future with
a TransientError (503 for the request), never leaves it waiting or acknowledged."""

import asyncio
import socket

import pytest

from geoflux.errors import TransientError
from geoflux.settings import KafkaSettings
from services.api.async_producer import AsyncProducer


def closed_port() -> int:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unacknowledged_record_fails_its_future_with_a_transient_error():
    producer = AsyncProducer(KafkaSettings(bootstrap=f"127.0.0.1:{closed_port()}"),
                             **{"delivery.timeout.ms": 300, "linger.ms": 0, "log_level": 0})

    async def run():
        futures = [producer.produce("geo.locations", b"x", f"k{i}") for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 20)

    try:
        outcomes = asyncio.run(run())
    finally:
        producer.close(timeout_s=0)
    assert len(outcomes) == 3
    for out in outcomes:
        assert isinstance(out, TransientError) and "not acknowledged" in str(out), out


def test_a_full_local_queue_is_a_transient_error_not_a_blocked_loop():
    producer = AsyncProducer(KafkaSettings(bootstrap=f"127.0.0.1:{closed_port()}"),
                             **{"queue.buffering.max.messages": 2, "log_level": 0})

    async def run():
        producer.produce("geo.locations", b"x", "a")
        producer.produce("geo.locations", b"x", "b")
        with pytest.raises(TransientError, match="queue is full"):
            producer.produce("geo.locations", b"x", "c")

    try:
        asyncio.run(run())
    finally:
        producer.close(timeout_s=0)
