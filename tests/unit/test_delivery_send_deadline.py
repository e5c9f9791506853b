"""The delivery worker's send deadline: a channel that does not answer within
`send_timeout_s` is a transient failure (retried, the breaker told), and a channel that
answers in time is SENT. No broker: the worker's outputs are captured where it produces them."""

from __future__ import annotations

import asyncio

from connectors.channels.base import ChannelConfig
from geoflux.settings import AlertSettings, KafkaSettings
from schemas.codec import AvroCodec
from streams.alerting.delivery import DeliveryStage
from streams.alerting.stages import delivery_request
from streams.runtime.work_queue import Work
from geoflux.keys import scoped


class SlowChannel:
    name, kind = "hook", "webhook"

    def __init__(self, delay_s: float) -> None:
        self.delay_s, self.sent = delay_s, []

    async def send(self, n) -> str:
        await asyncio.sleep(self.delay_s)
        self.sent.append(n.delivery_id)
        return "200"

    async def close(self) -> None:
        pass


def worker_with(channel: SlowChannel) -> tuple[DeliveryStage, list]:
    w = DeliveryStage(KafkaSettings(bootstrap="127.0.0.1:9", topic_prefix="unit."), AvroCodec(),
                      AlertSettings(send_timeout_s=0.2, primary_backoff_s=(1.0,)))
    key = scoped("acme", "hook")
    w.configs[key] = (1, ChannelConfig("hook", "webhook", "acme", {"url": "http://x", "secret": "s"}))
    w.channels[key] = (1, channel)
    produced: list = []
    w.produce = lambda t, k, schema, rec: produced.append((t, schema, rec))
    return w, produced


def request() -> dict:
    alert = {"alert_id": "a1", "tenant_id": "acme", "severity": "critical", "title": "t", "body": "b",
             "labels": {}, "created_ms": 1, "fallback_channel": None}
    return delivery_request(alert, "hook", 1)


def test_a_channel_silent_past_the_deadline_is_retried_as_transient():
    channel = SlowChannel(5.0)
    w, produced = worker_with(channel)
    w.tracker.add(("unit.alerts.deliveries", 0), 7)
    asyncio.run(asyncio.wait_for(w.handle(Work(("unit.alerts.deliveries", 0), 7, request())), 3))
    outcomes = [rec for t, schema, rec in produced if t == w.t_outcomes]
    retries = [rec for t, schema, rec in produced if t == w.t_retry]
    assert [o["outcome"] for o in outcomes] == ["RETRYING"] and channel.sent == []
    assert outcomes[0]["error_message"] == "hook: no answer within 0s"
    assert retries[0]["attempt"] == 2 and w.breakers[scoped("acme", "hook")].failures == 1


def test_a_channel_answering_within_the_deadline_is_sent():
    channel = SlowChannel(0.01)
    w, produced = worker_with(channel)
    w.tracker.add(("unit.alerts.deliveries", 0), 7)
    asyncio.run(w.handle(Work(("unit.alerts.deliveries", 0), 7, request())))
    assert [rec["outcome"] for t, _s, rec in produced if t == w.t_outcomes] == ["SENT"]
    assert channel.sent == ["a1:hook"]
