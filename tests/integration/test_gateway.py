"""The WebSocket gateway on the real broker: a client that drops and reconnects during a burst
ends with every event (exactly once after de-duplication, in per-geofence order); a client
that stops acknowledging is disconnected with a reason while another receives everything;
tenant keys only ever receive their tenant's events."""

import asyncio
import json
import random
import threading
import uuid

import aiohttp
import pytest

from connectors.kafka_admin import apply
from geoflux.settings import KafkaSettings
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.geo_helpers import OPERATOR_KEY, TENANT_KEYS, start_api, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

# a small ring, so a reconnecting client often resumes below it and catches up from Kafka
GATEWAY_ENV = {"GEOFLUX_GATEWAY_RING_PER_PARTITION": "200", "GEOFLUX_GATEWAY_WINDOW": "100",
               "GEOFLUX_GATEWAY_SLOW_CLIENT_S": "3", "GEOFLUX_GATEWAY_HEARTBEAT_S": "1"}


@pytest.fixture(scope="module")
def gw(bootstrap, tmp_path_factory):
    kafka = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(kafka)
    port = free_port()
    proc = start_api(kafka, port, tmp_path_factory.mktemp("gateway"), **GATEWAY_ENV)
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
        yield {"kafka": kafka, "url": f"ws://127.0.0.1:{port}/api/v1/stream", "codec": AvroCodec()}
    finally:
        stop(proc)


def burst(n, fences=6, tenant="acme", tag=""):
    return [geofence_event(i, tenant, "ENTER" if i % 2 else "EXIT", f"{tag}e{i % 17}", f"{tag}g{i % fences}")
            for i in range(n)]


def publish_in_chunks(gw, events, chunk=100):
    """Publishes from a thread in chunks, so the burst overlaps the client's reconnects."""
    def run():
        for i in range(0, len(events), chunk):
            publish_events(gw["kafka"], gw["codec"], events[i:i + chunk])
    t = threading.Thread(target=run)
    t.start()
    return t


async def connect(session, url, key=OPERATOR_KEY, **subscribe):
    ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    await ws.send_str(json.dumps({"type": "subscribe", **subscribe}))
    hello = json.loads((await ws.receive(timeout=30)).data)
    assert hello["type"] == "subscribed", hello
    return ws


def test_reconnecting_client_gets_every_event_once_in_geofence_order(gw):
    events = burst(3000, tag="r")
    expected = {}
    for e in events:
        expected.setdefault(e["geofence_id"], []).append(e["event_id"])
    rng = random.Random(7)

    async def client():
        received, reconnects = [], 0
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, gw["url"], client_id="c1", filter={"tenant_id": "acme"})
            publisher = publish_in_chunks(gw, events)
            deadline = asyncio.get_running_loop().time() + 120
            drop_after = rng.randint(50, 400)
            while len({r["id"] for r in received}) < len(events):
                assert asyncio.get_running_loop().time() < deadline, f"{len({r['id'] for r in received})} received"
                msg = await ws.receive(timeout=30)
                body = json.loads(msg.data)
                if body["type"] == "event":
                    received.append({"id": body["id"], "geofence_id": body["event"]["geofence_id"]})
                    drop_after -= 1
                if body["seq"] % 25 == 0:
                    await ws.send_str(json.dumps({"type": "ack", "seq": body["seq"]}))
                if drop_after <= 0:  # drop the connection, unacknowledged messages and all
                    await ws.close()
                    reconnects += 1
                    ws = await connect(session, gw["url"], client_id="c1", filter={"tenant_id": "acme"})
                    drop_after = rng.randint(50, 400)
            await ws.close()
            await asyncio.to_thread(publisher.join)
        return received, reconnects

    received, reconnects = asyncio.run(client())
    assert reconnects >= 5
    assert {r["id"] for r in received} == {e["event_id"] for e in events}
    first_seen, seen = {}, set()
    for r in received:
        if r["id"] not in seen:
            seen.add(r["id"])
            first_seen.setdefault(r["geofence_id"], []).append(r["id"])
    assert first_seen == expected  # de-duplicated, each geofence's events in publish order


def test_slow_client_is_cut_off_with_a_reason_and_others_get_everything(gw):
    events = burst(600, tag="s")

    async def run():
        async with aiohttp.ClientSession() as session:
            slow = await connect(session, gw["url"], client_id="slow")
            fast = await connect(session, gw["url"], client_id="fast")
            publisher = publish_in_chunks(gw, events)
            got = set()
            while len(got) < len(events):
                body = json.loads((await fast.receive(timeout=30)).data)
                if body["type"] == "event":
                    got.add(body["id"])
                    await fast.send_str(json.dumps({"type": "ack", "seq": body["seq"]}))
            # the slow client read everything sent but never acknowledged: its window is full
            closed = None
            while closed is None:
                msg = await slow.receive(timeout=30)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    closed = (slow.close_code, msg.extra)
            await asyncio.to_thread(publisher.join)
            return got, closed

    got, (code, reason) = asyncio.run(run())
    assert got == {e["event_id"] for e in events}
    assert code == 4008 and "slow consumer: 100 messages unacknowledged" in reason


def test_tenant_keys_only_receive_their_tenant(gw):
    # globex first: on every partition its events precede acme's, so by the time the acme
    # client has all of acme's, the gateway has already passed (and withheld) all of globex's
    mixed = burst(200, tenant="globex", tag="t") + burst(200, tenant="acme", tag="t")
    mixed = [dict(e, event_id=uuid.uuid4().hex) for e in mixed]

    async def run():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as no_key:
                await session.ws_connect(gw["url"])
            assert no_key.value.status == 401
            other = await session.ws_connect(gw["url"], headers={"X-API-Key": TENANT_KEYS["globex"]})
            await other.send_str(json.dumps({"type": "subscribe", "filter": {"tenant_id": "acme"}}))
            msg = await other.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4003 and "forbidden" in msg.extra
            # a key in the URL is refused (proxies log URLs); a browser's single-use ticket works once
            with pytest.raises(aiohttp.WSServerHandshakeError) as in_url:
                await session.ws_connect(f"{gw['url']}?api_key={TENANT_KEYS['acme']}")
            assert in_url.value.status == 401
            tickets = gw["url"].replace("ws://", "http://") + "/tickets"
            async with session.post(tickets, headers={"X-API-Key": TENANT_KEYS["acme"]}) as resp:
                assert resp.status == 201
                ticket = (await resp.json())["ticket"]
            async with session.post(tickets) as resp:
                assert resp.status == 401  # a ticket needs a key
            acme = await connect(session, f"{gw['url']}?ticket={ticket}", key=None)
            with pytest.raises(aiohttp.WSServerHandshakeError) as reused:
                await session.ws_connect(f"{gw['url']}?ticket={ticket}")
            assert reused.value.status == 401
            publisher = publish_in_chunks(gw, mixed)
            got = []
            while len(got) < 200:
                body = json.loads((await acme.receive(timeout=30)).data)
                if body["type"] == "event":
                    got.append(body["event"])
                    await acme.send_str(json.dumps({"type": "ack", "seq": body["seq"]}))
            await asyncio.to_thread(publisher.join)
            return got

    got = asyncio.run(run())
    assert {e["tenant_id"] for e in got} == {"acme"}
    assert sorted(e["event_id"] for e in got) == sorted(e["event_id"] for e in mixed if e["tenant_id"] == "acme")
