"""The operator console (`console/`, built with esbuild into `console/dist`, served at /console)
and the one read-only endpoint it needs that no other route gives: entity positions.

    GET /console/            the single-page console (no key: it asks the user for one)
    GET /api/v1/entities     latest position per entity, tenant-scoped by the key
        ?limit=1000&max_age_s=600

Positions come from tailing `geo.locations` (the last `TAIL` records per partition at start,
then live) in a background thread; they are a view for people, not part of any guarantee.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import structlog
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka_config import consumer_config
from geoflux.keys import scoped
from geoflux.settings import ApiSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api.auth import tenant_filter
from services.api.problems import HTTPProblem

log = structlog.get_logger("geoflux.console")
DIST = Path(__file__).resolve().parents[2] / "console" / "dist"
TAIL = 2000
MAX_ENTITIES = 50_000


class EntityPositions:
    """The newest location of every entity seen on `geo.locations` since a little before start."""

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self.kafka, self.codec = kafka, codec
        self.topic = topic("geo.locations", kafka)
        self.latest: dict[str, dict] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="entity-positions", daemon=True)

    def start(self) -> "EntityPositions":
        self._thread.start()
        return self

    def _assign(self, consumer: Consumer) -> None:
        md = consumer.list_topics(self.topic, timeout=self.kafka.request_timeout_s)
        parts = []
        for p in md.topics[self.topic].partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                    timeout=self.kafka.request_timeout_s)
            parts.append(TopicPartition(self.topic, p, max(lo, hi - TAIL)))
        consumer.assign(parts)

    def _run(self) -> None:
        consumer = Consumer(consumer_config(self.kafka, f"console-{uuid.uuid4().hex[:8]}",
                                            **{"auto.offset.reset": "latest"}))
        try:
            while not self._stop.is_set():
                try:
                    self._assign(consumer)
                    break
                except Exception as exc:  # broker not there yet: the view stays empty meanwhile
                    log.warning("entity positions: cannot assign", error=str(exc))
                    self._stop.wait(2)
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.5):
                    if msg.error() or msg.value() is None:
                        continue
                    try:
                        rec = self.codec.decode(msg.value(), "LocationUpdate")
                    except Exception:  # undecodable records are the evaluator's DLQ's business
                        continue
                    self._apply(rec)
        finally:
            consumer.close()

    def _apply(self, rec: dict) -> None:
        rec = dict(rec, tenant_id=rec.get("tenant_id") or "default")
        key = scoped(rec["tenant_id"], rec["entity_id"])  # entity ids are unique only per tenant
        with self.lock:
            old = self.latest.get(key)
            if old is None or rec["ts_ms"] >= old["ts_ms"]:
                if old is None and len(self.latest) >= MAX_ENTITIES:
                    return
                self.latest[key] = {k: rec[k] for k in ("entity_id", "tenant_id", "lon", "lat", "ts_ms")}

    def items(self, tenant: str | None, max_age_s: float, limit: int) -> list[dict]:
        horizon = time.time() * 1000 - max_age_s * 1000
        with self.lock:
            rows = [r for r in self.latest.values()
                    if r["ts_ms"] >= horizon and (tenant is None or r["tenant_id"] == tenant)]
        rows.sort(key=lambda r: r["ts_ms"], reverse=True)
        return rows[:limit]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


POSITIONS = web.AppKey("entity_positions", EntityPositions)


async def entities(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", 1000))
        max_age_s = float(request.query.get("max_age_s", 600))
    except ValueError:
        raise HTTPProblem(400, "Bad Request", "limit and max_age_s must be numbers") from None
    if not 1 <= limit <= 10_000 or max_age_s <= 0:
        raise HTTPProblem(400, "Bad Request", "limit must be 1..10000 and max_age_s positive")
    items = request.app[POSITIONS].items(tenant_filter(request), max_age_s, limit)
    return web.json_response({"items": items, "total": len(items)})


CONSOLE_DIR = web.AppKey("console_dir", Path)


async def console_index(request: web.Request) -> web.StreamResponse:
    index = request.app[CONSOLE_DIR] / "index.html"
    if not index.exists():
        raise HTTPProblem(404, "Not Found", "the console is not built: cd console && npm ci && npm run build")
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


async def console_redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


def add_routes(app: web.Application, kafka: KafkaSettings, codec: AvroCodec) -> list:
    positions = EntityPositions(kafka, codec).start()
    app[POSITIONS] = positions
    dist = Path(ApiSettings().console_dir or DIST)
    app[CONSOLE_DIR] = dist
    app.router.add_get("/api/v1/entities", entities)
    app.router.add_get("/console", console_redirect)
    app.router.add_get("/console/", console_index)
    if dist.is_dir():
        app.router.add_static("/console/", dist, show_index=False)
    return [positions]
