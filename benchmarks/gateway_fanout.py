"""WebSocket gateway fan-out, measured: N subscribers (all events, acknowledging as they go)
while geofence events are published at a steady rate. Prints messages/s delivered across all
subscribers and publish-to-receive latency P50/P95/P99.

    python benchmarks/gateway_fanout.py --subscribers 100 --events 5000 --rate 500
    python benchmarks/gateway_fanout.py --smoke     # seconds: the script works, figures mean nothing

The ceiling compared with: the messages/s asked for (subscribers x publish rate); the ratio is
what was delivered of it.

The broker, the API (gateway inside it), the publisher and all subscribers share this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._broker import benchmark_broker  # noqa: E402
from connectors.kafka_admin import apply  # noqa: E402
from connectors.kafka_producer import ReliableProducer  # noqa: E402
from geoflux.settings import KafkaSettings  # noqa: E402
from schemas.catalogue import topic  # noqa: E402
from schemas.codec import AvroCodec  # noqa: E402
from services.devstack.local_process import free_port, port_is_open  # noqa: E402
from tests.integration.alert_helpers import geofence_event  # noqa: E402
from tests.integration.geo_helpers import OPERATOR_KEY, start_api, stop  # noqa: E402


def publish(settings: KafkaSettings, n: int, rate: float) -> None:
    codec, producer, t = AvroCodec(), ReliableProducer(settings), topic("geo.geofence-events", settings)
    start = time.monotonic()
    for i in range(n):
        ahead = i / rate - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # pacing the source to the target rate
        e = dict(geofence_event(i, entity=f"e{i % 500}", geofence=f"g{i % 50}"),
                 event_id=uuid.uuid4().hex, produced_ms=int(time.time() * 1000))
        producer.send(t, codec.encode(t, "GeofenceEvent", e), key=e["geofence_id"])
        if i % 100 == 0:
            producer.flush_or_raise()  # keeps the producer's own batching out of the latency
    producer.flush_or_raise()


async def subscriber(url: str, n: int, latencies: list[float], ready: asyncio.Event, counter: list[int]) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, headers={"Authorization": f"Bearer {OPERATOR_KEY}"},
                                      max_msg_size=0)
        await ws.send_str(json.dumps({"type": "subscribe", "client_id": uuid.uuid4().hex}))
        await ws.receive(timeout=30)
        counter[0] += 1
        if counter[0] == counter[1]:
            ready.set()
        got = 0
        while got < n:
            body = json.loads((await ws.receive(timeout=120)).data)
            if body["type"] != "event":
                continue
            got += 1
            latencies.append(time.time() * 1000 - body["event"]["produced_ms"])
            if got % 50 == 0 or got == n:
                await ws.send_str(json.dumps({"type": "ack", "seq": body["seq"]}))
        await ws.close()


async def run(url: str, settings: KafkaSettings, subscribers: int, n: int, rate: float) -> tuple[list, float]:
    latencies: list[float] = []
    ready, counter = asyncio.Event(), [0, subscribers]
    tasks = [asyncio.create_task(subscriber(url, n, latencies, ready, counter)) for _ in range(subscribers)]
    await asyncio.wait_for(ready.wait(), 120)
    start = time.monotonic()
    pub = threading.Thread(target=publish, args=(settings, n, rate))
    pub.start()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    pub.join()
    return latencies, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--smoke", action="store_true", help="3 subscribers, 60 events at 30/s")
    args = ap.parse_args()
    if args.smoke:
        args.subscribers, args.events, args.rate = 3, 60, 30
    workdir = Path(tempfile.mkdtemp(prefix="geoflux-gwbench-"))
    with benchmark_broker(workdir) as bootstrap:
        settings = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"gw{uuid.uuid4().hex[:6]}.")
        apply(settings)
        port = free_port()
        api = start_api(settings, port, workdir)
        try:
            deadline = time.monotonic() + 60
            while not port_is_open("127.0.0.1", port):
                if time.monotonic() > deadline:
                    raise SystemExit("the API did not start; see " + str(workdir / "api.log"))
                time.sleep(0.2)  # polling the port
            latencies, elapsed = asyncio.run(run(f"ws://127.0.0.1:{port}/api/v1/stream", settings,
                                                 args.subscribers, args.events, args.rate))
        finally:
            stop(api)
    lat = sorted(latencies)
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))])
    print(f"\ngateway fan-out: {args.subscribers} subscribers x {args.events} events published at "
          f"{args.rate:g}/s ({os.cpu_count()} cores; broker, API, publisher and clients on this machine)\n")
    asked = args.subscribers * args.rate
    print(f"{'delivered':>10} {'seconds':>8} {'ceiling msgs/s':>14} {'msgs/s':>8} {'ratio':>6} "
          f"{'P50 ms':>7} {'P95 ms':>7} {'P99 ms':>7}")
    print(f"{len(lat):>10} {elapsed:>8.1f} {asked:>14,.0f} {len(lat) / elapsed:>8,.0f} "
          f"{len(lat) / elapsed / asked:>6.2f} {q(.5):>7.0f} {q(.95):>7.0f} {q(.99):>7.0f}")
    print("ceiling: the messages/s asked for (subscribers x publish rate)")


if __name__ == "__main__":
    main()
