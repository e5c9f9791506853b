"""GEOFLUX_API_WORKERS=2: two API processes share the port; every REST evaluate is answered
by the process that asked (its reply matcher sees every reply and takes only its own): with
both listening, the kernel spreads 200 new connections over both, and a reply taken by the
wrong process would leave its request to time out. Stopping the API stops both."""

import asyncio
import subprocess
import time

import aiohttp
import pytest

from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.geo_helpers import (TENANT_KEYS, http, start_api, start_worker, stop,
                                           wait_fence_in_effect)

pytestmark = pytest.mark.kafka

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}


def listeners(port: int) -> int:
    """Listening TCP sockets on the port (/proc/net/tcp: state 0A is LISTEN)."""
    rows = open("/proc/net/tcp").read().splitlines()[1:]
    return sum(1 for r in rows if r.split()[1].endswith(f":{port:04X}") and r.split()[3] == "0A")


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid), "-f", "multiprocessing.spawn"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


async def evaluate_all(url: str, n: int) -> list[tuple[int, dict, str]]:
    headers = {"Authorization": f"Bearer {TENANT_KEYS['t']}"}
    base = int(time.time() * 1000)
    # a new connection per request: the kernel spreads connections over the processes
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async def one(i: int):
            body = {"entity_id": f"e{i}", "lon": 0.5 if i % 2 else 5.0, "lat": 0.5, "timestamp": base + i}
            async with s.post(url, json=body, headers=headers) as resp:
                return resp.status, await resp.json(), body["entity_id"]

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_two_api_processes_each_answer_their_own_requests(kafka_settings, tmp_path):
    port = free_port()
    api = start_api(kafka_settings, port, tmp_path, GEOFLUX_API_WORKERS="2")
    worker = start_worker(kafka_settings, "0", tmp_path)
    try:
        wait_for(lambda: port_is_open("127.0.0.1", port), 90, what="API port")
        wait_for(lambda: len(children(api.pid)) == 2, 30, what="two API processes")
        base = f"http://127.0.0.1:{port}"
        status, fence = http("POST", f"{base}/api/v1/geofences", {
            "type": "Feature", "geometry": SQUARE, "properties": {"name": "z", "tenant_id": "t"}})
        assert status == 201
        wait_fence_in_effect(f"{base}/api/v1", fence["id"], 0.5, 0.5)
        wait_for(lambda: listeners(port) == 2, 90, what="both processes listening")
        results = asyncio.run(evaluate_all(f"{base}/api/v1/geoevent/evaluate", 200))
        assert [s for s, _, _ in results if s != 200] == []
        for _status, body, entity in results:
            assert body["entity_id"] == entity
            inside = int(entity[1:]) % 2 == 1
            assert body["inside"] == ([fence["id"]] if inside else [])
    finally:
        stop(api)
        stop(worker)
    assert api.returncode is not None
    assert children(api.pid) == []
