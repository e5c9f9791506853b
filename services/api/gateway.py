"""The WebSocket gateway: geofence events to clients, at least once, resumable, in per-geofence
order, with backpressure that never reaches the pipeline or other clients.

    GET /api/v1/stream (WebSocket; API key in Authorization/X-API-Key, or a single-use ?ticket= for browsers)
    -> {"type": "subscribe", "client_id": "c1", "filter": {"geofence_id": "g1"},
        "cursor": "v1:0=15,1=7" | omitted, "from": "latest" | "earliest"}
    <- {"type": "subscribed", "cursor": ..., "resumed": true|false}
    <- {"type": "event", "seq": 1, "id": "<event_id>", "cursor": ..., "partition": 0,
        "offset": 15, "event": {...}}
    -> {"type": "ack", "seq": 1}
    <- {"type": "cursor", "seq": 1, "cursor": ...}   (progress past filtered-out events)
    close 4008 "slow consumer: ..." | 4003 "forbidden: ..." | 4400 "bad request: ..."

One hub thread reads the topic (read_committed) into a bounded in-memory ring per partition;
every session reads the ring at its own cursor, so a slow session only falls behind itself. A
session whose cursor is older than the ring catches up from Kafka with its own consumer, then
joins the ring. Without a cursor in the subscribe message, a session resumes from the last
cursor its `client_id` acknowledged (kept in the compacted `ops.gateway-cursors`, so any
gateway instance can resume it); without either, it starts at `from`.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
import time
import uuid

import structlog
from aiohttp import WSMsgType, web
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka_config import consumer_config
from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.errors import ValidationError
from geoflux.settings import GatewaySettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api.auth import principal
from services.api.gateway_protocol import (FlowWindow, Subscription, TokenBucket, decode_cursor,
                                       encode_cursor, parse_subscription)

log = structlog.get_logger("geoflux.gateway")


def _consumer(kafka: KafkaSettings) -> Consumer:
    # earliest: a cursor below the log start (retention) resumes at the oldest record kept
    return Consumer(consumer_config(kafka, f"gateway-{uuid.uuid4().hex[:8]}"))


class Ring:
    """One partition's recent records, in offset order, bounded: at least the last `capacity`,
    at most a sixteenth more. Mutated on the event loop only."""

    def __init__(self, start: int, capacity: int) -> None:
        self.offsets: list[int] = []
        self.items: list[tuple[int, dict]] = []
        self.lo = self.hi = start  # serves every position in [lo, hi]
        self.capacity = capacity
        # Trimmed in steps: dropping the oldest one at a time moved the whole list on every
        # append of a full ring (50,000 entries; a tenth of the API's CPU under REST load).
        self._limit = capacity + max(1, capacity // 16)

    def append(self, offset: int, event: dict, next_offset: int) -> None:
        self.offsets.append(offset)
        self.items.append((offset, event))
        self.hi = next_offset
        if len(self.items) > self._limit:
            drop = len(self.items) - self.capacity
            self.lo = self.offsets[drop]
            del self.offsets[:drop], self.items[:drop]

    def read(self, position: int, limit: int) -> list[tuple[int, dict]]:
        at = bisect.bisect_left(self.offsets, position)
        return self.items[at:at + limit]


class Hub:
    """Tails the topic into rings and wakes sessions when something arrived."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: GatewaySettings) -> None:
        self.kafka, self.codec, self.settings = kafka, codec, settings
        self.topic = topic("geo.geofence-events", kafka)
        self.rings: dict[int, Ring] = {}
        self.changed = asyncio.Event()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer = _consumer(kafka)
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        md = self._consumer.list_topics(self.topic, timeout=self.kafka.request_timeout_s)
        assignment = []
        for p in md.topics[self.topic].partitions:
            _lo, hi = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                           timeout=self.kafka.request_timeout_s)
            self.rings[p] = Ring(hi, self.settings.ring_per_partition)
            assignment.append(TopicPartition(self.topic, p, hi))
        self._consumer.assign(assignment)
        self._thread = threading.Thread(target=self._run, name="gateway-hub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            msgs = self._consumer.consume(1000, 0.02)  # returns at 1000 or the timeout: it is latency
            batch = []
            for msg in msgs:
                if msg.error() or msg.value() is None:
                    continue
                try:
                    batch.append((msg.partition(), msg.offset(), self.codec.decode(msg.value(), "GeofenceEvent")))
                except ValidationError as exc:
                    # the stages that own the topic dead-letter it; the gateway counts and skips it
                    log.error("undecodable event skipped by the gateway", offset=msg.offset(), error=str(exc))
                    TopicReader.default_on_skip(msg.topic(), "undecodable")
                    batch.append((msg.partition(), msg.offset(), None))
            if batch:
                self._loop.call_soon_threadsafe(self._append, batch)
            elif msgs == []:
                # a transaction marker moves the end without a record: keep `hi` honest so an
                # idle cursor still points at the end
                positions = self._consumer.position(self._consumer.assignment())
                self._loop.call_soon_threadsafe(self._advance, {tp.partition: tp.offset for tp in positions
                                                                if tp.offset >= 0})

    def _append(self, batch: list) -> None:
        for partition, offset, event in batch:
            ring = self.rings[partition]
            if event is None:
                ring.hi = offset + 1
            else:
                ring.append(offset, event, offset + 1)
        self._wake()

    def _advance(self, positions: dict[int, int]) -> None:
        moved = False
        for p, pos in positions.items():
            ring = self.rings.get(p)
            if ring and pos > ring.hi:
                ring.hi = pos
                moved = True
        if moved:
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def ends(self) -> dict[int, int]:
        return {p: r.hi for p, r in self.rings.items()}

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._consumer.close()


class CursorStore:
    """Acknowledged cursors by (tenant, client id), durable in a compacted topic. Writes are
    coalesced (the newest per client, flushed every second): losing the last second of acks
    only means re-sending what the client may already have, which at-least-once allows."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self.topic, self.codec = topic("ops.gateway-cursors", kafka), codec
        self.cursors: dict[str, str] = {}
        self.producer = ReliableProducer(kafka)
        self.reader = TopicReader(kafka, self.topic, "ConfigRecord", codec, self._apply)

    def _apply(self, key: str, rec: dict | None, _msg) -> bool:
        if rec is None:
            return self.cursors.pop(key, None) is not None
        self.cursors[key] = json.loads(rec["body"])["cursor"]
        return True

    def start(self) -> "CursorStore":
        self.reader.load().follow()
        return self

    def get(self, who: str) -> str | None:
        with self.reader.lock:
            return self.cursors.get(who)

    def put(self, who: str, tenant: str, cursor: str) -> None:
        now = int(time.time() * 1000)
        rec = {"kind": "gateway-cursor", "id": who, "tenant_id": tenant, "version": 1,
               "body": json.dumps({"cursor": cursor}), "updated_ms": now, "deleted": False}
        with self.reader.lock:
            self.cursors[who] = cursor
        self.producer.send(self.topic, self.codec.encode(self.topic, "ConfigRecord", rec), key=who)

    def flush(self) -> None:
        self.producer.flush_or_raise()

    def close(self) -> None:
        self.reader.close()
        self.producer.flush_or_raise()


class SessionClosed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class Session:
    def __init__(self, ws: web.WebSocketResponse, gateway: "Gateway", sub: Subscription,
                 positions: dict[int, int], owner: str, tenant: str) -> None:
        self.ws, self.gw, self.sub, self.owner, self.tenant = ws, gateway, sub, owner, tenant
        s = gateway.settings
        self.positions = positions
        self.window = FlowWindow(s.window, s.slow_client_s)
        self.bucket = TokenBucket(s.rate_per_s, s.burst, time.monotonic())
        self.cursor_of_seq: dict[int, str] = {}
        self.acked = asyncio.Event()
        self.catchup: Consumer | None = None
        self.catchup_parts: set[int] = set()
        self.last_cursor_sent = 0.0

    async def run(self) -> None:
        reader, pump = asyncio.create_task(self._read_acks()), asyncio.create_task(self._pump())
        try:
            # the client leaving ends the pump; the pump failing (slow client) ends the session
            done, _ = await asyncio.wait({reader, pump}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            reader.cancel()
            pump.cancel()
            if self.catchup is not None:
                await asyncio.to_thread(self.catchup.close)

    async def _read_acks(self) -> None:
        async for msg in self.ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = json.loads(msg.data)
                if body.get("type") != "ack" or not isinstance(body.get("seq"), int):
                    raise ValidationError('expected {"type": "ack", "seq": N}')
                self.window.on_ack(body["seq"])
            except (ValueError, ValidationError) as exc:
                await self.ws.close(code=4400, message=f"bad request: {exc}"[:120].encode())
                return
            cursor = self.cursor_of_seq.get(body["seq"])
            for seq in [s for s in self.cursor_of_seq if s <= body["seq"]]:
                del self.cursor_of_seq[seq]
            if cursor and self.owner:
                self.gw.cursors.put(self.owner, self.tenant, cursor)
            self.acked.set()

    async def _pump(self) -> None:
        s = self.gw.settings
        while not self.ws.closed:
            changed = self.gw.hub.changed
            batch = await self._next_records(s.batch)
            if not batch:
                await self._maybe_send_cursor()
                try:  # asyncio.timeout, not wait_for, which drops a cancel on 3.11 (gh-86296)
                    async with asyncio.timeout(s.heartbeat_s):
                        await changed.wait()
                except TimeoutError:
                    pass
                continue
            for partition, offset, event in batch:
                self.positions[partition] = offset + 1
                if event is None or not self.sub.matches(event):
                    continue
                await self._wait_for_window()
                await self._wait_for_token()
                self.window.on_sent(time.monotonic())
                seq = self.window.sent
                cursor = encode_cursor(self.positions)
                self.cursor_of_seq[seq] = cursor
                await self._send({"type": "event", "seq": seq, "id": event["event_id"], "cursor": cursor,
                                  "partition": partition, "offset": offset, "event": event})

    async def _next_records(self, limit: int) -> list[tuple[int, int, dict | None]]:
        out: list = []
        behind = {}
        for p, ring in self.gw.hub.rings.items():
            pos = self.positions.setdefault(p, ring.hi)
            if pos < ring.lo:
                behind[p] = pos
            else:
                out += [(p, o, e) for o, e in ring.read(pos, limit)]
                if pos < ring.hi and not ring.read(pos, 1):
                    self.positions[p] = ring.hi  # only markers or skipped records in between
        if behind:
            out += await self._catch_up(behind, limit)
        elif self.catchup is not None:
            await asyncio.to_thread(self.catchup.close)
            self.catchup = None
        return out

    async def _catch_up(self, behind: dict[int, int], limit: int) -> list:
        """Older than the ring: read from Kafka with this session's own consumer. A partition
        that reaches the ring gets a marker record (None) at the ring's start, processed after
        its last caught-up record, so positions never jump ahead of what was sent."""
        hub = self.gw.hub
        if self.catchup is None or set(behind) != self.catchup_parts:
            self.catchup = self.catchup or _consumer(self.gw.kafka)
            await asyncio.to_thread(self.catchup.assign, [TopicPartition(hub.topic, p, pos)
                                                          for p, pos in behind.items()])
            self.catchup_parts = set(behind)
        msgs = await asyncio.to_thread(self.catchup.consume, limit, 0.5)
        out: list = []
        for msg in msgs:
            p = msg.partition()
            if msg.error() or p not in behind or not behind[p] <= msg.offset() < hub.rings[p].lo:
                continue
            try:
                event = self.gw.codec.decode(msg.value(), "GeofenceEvent") if msg.value() else None
            except ValidationError:
                event = None
            out.append((p, msg.offset(), event))
        reached = await asyncio.to_thread(self.catchup.position,
                                          [TopicPartition(hub.topic, p) for p in behind])
        out += [(tp.partition, hub.rings[tp.partition].lo - 1, None) for tp in reached
                if tp.offset >= hub.rings[tp.partition].lo]
        return out

    async def _wait_for_window(self) -> None:
        while not self.window.open:
            if self.window.stalled(time.monotonic()):
                unacked = self.window.sent - self.window.acked
                raise SessionClosed(4008, f"slow consumer: {unacked} messages unacknowledged for "
                                          f"{self.window.stall_s:g} s")
            self.acked.clear()
            try:
                async with asyncio.timeout(0.5):
                    await self.acked.wait()
            except TimeoutError:
                pass

    async def _wait_for_token(self) -> None:
        while (wait := self.bucket.take(time.monotonic())) > 0:
            await asyncio.sleep(wait)  # the per-subscriber rate limit

    async def _maybe_send_cursor(self) -> None:
        now = time.monotonic()
        if now - self.last_cursor_sent >= self.gw.settings.heartbeat_s and not self.ws.closed:
            self.last_cursor_sent = now
            # progress past filtered-out records: acknowledging this moves the client's cursor
            seq = self.window.sent
            cursor = self.cursor_of_seq[seq] = encode_cursor(self.positions)
            await self._send({"type": "cursor", "seq": seq, "cursor": cursor})

    async def _send(self, body: dict) -> None:
        try:
            async with asyncio.timeout(self.gw.settings.send_timeout_s):
                await self.ws.send_str(json.dumps(body))
        except TimeoutError:
            raise SessionClosed(4008, f"slow consumer: a send took over "
                                      f"{self.gw.settings.send_timeout_s:g} s") from None
        except ConnectionResetError:
            raise SessionClosed(1001, "gone") from None


class Gateway:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: GatewaySettings) -> None:
        self.kafka, self.codec, self.settings = kafka, codec, settings
        self.hub = Hub(kafka, codec, settings)
        self.cursors = CursorStore(kafka, codec)

    async def start(self, _app=None) -> None:
        await asyncio.to_thread(self.cursors.start)
        await asyncio.to_thread(self.hub.start, asyncio.get_running_loop())
        self._flusher = asyncio.create_task(self._flush_cursors())

    async def _flush_cursors(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # the coalescing period of acknowledged cursors
            try:
                await asyncio.to_thread(self.cursors.flush)
            except Exception as exc:  # the broker is away: the next flush retries
                log.warning("gateway cursors not flushed", error=str(exc))

    async def stop(self, _app=None) -> None:
        self._flusher.cancel()
        await asyncio.to_thread(self.hub.close)
        await asyncio.to_thread(self.cursors.close)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        who = principal(request)
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=64 * 1024)
        await ws.prepare(request)
        try:
            session = await self._open(ws, who)
            if session is not None:
                await session.run()
        except SessionClosed as exc:
            log.info("gateway session closed", code=exc.code, reason=exc.reason)
            await ws.close(code=exc.code, message=exc.reason[:120].encode())
        finally:
            if not ws.closed:
                await ws.close()
        return ws

    async def _open(self, ws: web.WebSocketResponse, who) -> Session | None:
        try:
            msg = await ws.receive(timeout=30)
        except asyncio.TimeoutError:
            raise SessionClosed(4400, "bad request: no subscribe message within 30 s") from None
        if msg.type != WSMsgType.TEXT:
            return None
        try:
            body = json.loads(msg.data)
            if not isinstance(body, dict) or body.get("type") != "subscribe":
                raise ValidationError('the first message must be {"type": "subscribe", ...}')
            sub = parse_subscription(body.get("filter"), who.tenant)
            client_id = body.get("client_id")
            if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= 200):
                raise ValidationError("client_id must be a string of 1-200 characters")
            start = body.get("from", "latest")
            if start not in ("latest", "earliest"):
                raise ValidationError("from must be latest or earliest")
        except PermissionError as exc:
            raise SessionClosed(4003, f"forbidden: {exc}") from None
        except (ValueError, ValidationError) as exc:
            raise SessionClosed(4400, f"bad request: {exc}") from None
        tenant = who.tenant or "*"
        owner = f"{tenant}/{client_id}" if client_id else ""
        stored = self.cursors.get(owner) if owner else None
        resume_from = body.get("cursor") or stored
        try:
            positions = decode_cursor(resume_from) if resume_from else None
        except ValidationError as exc:
            raise SessionClosed(4400, f"bad request: {exc}") from None
        if positions is None:
            positions = self.hub.ends() if start == "latest" else {p: 0 for p in self.hub.rings}
        await ws.send_str(json.dumps({"type": "subscribed", "cursor": encode_cursor(positions),
                                      "resumed": bool(resume_from)}))
        return Session(ws, self, sub, dict(positions), owner, tenant)


def add_routes(app: web.Application, kafka: KafkaSettings, codec: AvroCodec,
               settings: GatewaySettings | None = None) -> Gateway:
    gateway = Gateway(kafka, codec, settings or GatewaySettings())
    app.on_startup.append(gateway.start)
    app.on_shutdown.append(gateway.stop)
    app.router.add_get("/api/v1/stream", gateway.handle)
    return gateway
