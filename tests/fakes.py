"""Stand-ins for Slack, Teams, PagerDuty, Opsgenie, Event Grid and webhook receivers: a real HTTP
server on 127.0.0.1 (simulated receivers, not mocks of our code) that records every request
and answers as it is told: ok, 503, 429 with Retry-After, 410, or hang past the timeout."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from services.devstack.local_process import free_port


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self):
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


class FakeReceiver:
    """`script(...)` queues answers (then the default); `fail_for(s, answer)` fails for a while."""

    def __init__(self, default: Answer | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.default = default or Answer()
        self.requests: list[Recorded] = []
        self._queue: deque[Answer] = deque()
        self._fail_until = 0.0
        self._fail_answer = Answer(503, "unavailable")
        self._fail_first: tuple[int, str, Answer] | None = None
        self._seen_keys: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake receiver did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            key = request.headers.get(self._fail_first[1]) if self._fail_first else None
            if key is not None:
                self._seen_keys[key] = self._seen_keys.get(key, 0) + 1
            if key is not None and self._seen_keys[key] <= self._fail_first[0]:
                answer = self._fail_first[2]
            elif self._queue:
                answer = self._queue.popleft()
            elif time.monotonic() < self._fail_until:
                answer = self._fail_answer
            else:
                answer = self.default
            self.requests.append(Recorded(request.path_qs, dict(request.headers), body,
                                          answer.status, time.time()))
        if answer.hang_s:
            await asyncio.sleep(answer.hang_s)  # a receiver that does not answer in time
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self._queue.extend(answers)

    def fail_for(self, seconds: float, answer: Answer | None = None) -> None:
        with self._lock:
            self._fail_until = time.monotonic() + seconds
            self._fail_answer = answer or Answer(503, "unavailable")

    def fail_first(self, n: int, key_header: str = "webhook-id",
                   answer: Answer | None = None) -> None:
        """The first `n` requests carrying each idempotency key fail; later ones succeed."""
        with self._lock:
            self._fail_first = (n, key_header, answer or Answer(503, "unavailable"))

    def recover(self) -> None:
        with self._lock:
            self._fail_until = 0.0
            self._queue.clear()

    def received(self, ok_only: bool = True) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if not ok_only or r.status < 300]

    def close(self) -> None:
        async def shutdown():
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
