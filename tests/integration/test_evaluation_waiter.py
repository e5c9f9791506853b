"""The reply matcher of REST evaluate: answers are matched by key to the request that waits
for them; replies for other API processes and garbage under a waited-for key are skipped
without stopping the matcher."""

import asyncio
import time

import pytest

from connectors.kafka_producer import ReliableProducer
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api.evaluation_waiter import EvaluationWaiter

pytestmark = pytest.mark.kafka


def reply(request_id: str, entity: str = "car") -> dict:
    return {"request_id": request_id, "entity_id": entity, "ts_ms": 1, "outcome": "applied",
            "reason": "", "inside": ["g1"], "events": []}


def test_replies_are_matched_by_key_and_garbage_does_not_stop_the_matcher(kafka_settings):
    codec = AvroCodec()
    t = topic("geo.evaluations", kafka_settings)
    waiter = EvaluationWaiter(kafka_settings, codec)
    producer = ReliableProducer(kafka_settings)

    async def run():
        mine, garbled = waiter.expect("mine"), waiter.expect("garbled")
        producer.send(t, codec.encode(t, "EvaluationResult", reply("other-process")), key="other-process")
        producer.send(t, b"\x00garbage", key="garbled")  # under a key that is waited for
        producer.send(t, codec.encode(t, "EvaluationResult", reply("mine", "bus")), key="mine")
        producer.flush_or_raise()
        got = await asyncio.wait_for(mine, 30)
        await asyncio.sleep(0)  # the garbled one had its chance; it must still be waiting
        return got, garbled.done()

    try:
        got, garbled_done = asyncio.run(run())
        assert got["request_id"] == "mine" and got["entity_id"] == "bus"
        assert not garbled_done
        assert waiter._thread.is_alive()
        # the matcher goes on after the garbage: a later request is answered too
        async def later():
            fut = waiter.expect("later")
            producer.send(t, codec.encode(t, "EvaluationResult", reply("later")), key="later")
            producer.flush_or_raise()
            return await asyncio.wait_for(fut, 30)

        t0 = time.monotonic()
        assert asyncio.run(later())["request_id"] == "later"
        assert time.monotonic() - t0 < 30
    finally:
        waiter.close()
