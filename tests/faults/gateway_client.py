"""A WebSocket client of the gateway, as a browser or a program would be: subscribed to every
event, acknowledging as it reads, reconnecting with the same client id (so the gateway resumes
it from its last acknowledged cursor) whenever the connection drops — the API SIGKILLed, the
broker away."""

from __future__ import annotations

import asyncio
import json
import threading

import aiohttp


class GatewayClient:
    def __init__(self, url: str, key: str, client_id: str = "fault-matrix") -> None:
        self.url, self.key, self.client_id = url, key, client_id
        self.received: list[tuple[str, str]] = []  # (event id, geofence id), in arrival order
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> "GatewayClient":
        self._thread.start()
        return self

    def ids(self) -> list[str]:
        with self._lock:
            return [i for i, _ in self.received]

    def snapshot(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.received)

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                try:
                    await self._session(session)
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, RuntimeError):
                    pass
                if not self._stop.is_set():
                    self.reconnects += 1
                    await asyncio.sleep(1)

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self.url, headers={"Authorization": f"Bearer {self.key}"},
                                      heartbeat=10) as ws:
            await ws.send_str(json.dumps({"type": "subscribe", "client_id": self.client_id}))
            while not self._stop.is_set():
                try:
                    msg = await ws.receive(timeout=5)
                except asyncio.TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                        return
                    continue
                body = json.loads(msg.data)
                if body.get("type") == "event":
                    with self._lock:
                        self.received.append((body["id"], body["event"]["geofence_id"]))
                if "seq" in body:
                    await ws.send_str(json.dumps({"type": "ack", "seq": body["seq"]}))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)
