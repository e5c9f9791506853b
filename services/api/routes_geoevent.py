"""/api/v1/geoevent/evaluate: the seed's REST evaluation, on top of the durable stream.

The update is written to `geo.locations` (acks=all) like any other; the answer is the
evaluator's own record of what it did, so the events returned are exactly the ones on the
events topic, with the same ids.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import datetime, timezone

from aiohttp import web

from geoflux.errors import TransientError, ValidationError
from geoflux.keys import check_tenant, scoped
from geoflux.settings import ApiSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api.async_producer import AsyncProducer
from services.api.auth import with_tenant
from services.api.evaluation_waiter import EvaluationWaiter
from services.api.problems import HTTPProblem, json_body
from streams.evaluator_records import REPLY_ATTRIBUTE, REPLY_PARTITION_ATTRIBUTE
from streams.geofence import snap_to_range
from streams.membership import REJECTED

CONTEXT = web.AppKey("geoevent_context", dict)
AVRO_LONG = 2**63


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def parse_location(body: object, where: str = "location") -> dict:
    if not isinstance(body, dict):
        raise ValidationError(f"{where}: expected an object")
    entity = body.get("entity_id")
    if not isinstance(entity, str) or not entity.strip() or len(entity) > 200:
        raise ValidationError(f"{where}: entity_id must be a non-empty string (at most 200 chars)")
    position = {}
    for name, bound in (("lon", 180), ("lat", 90)):
        v = body.get(name)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ValidationError(f"{where}: {name} must be a number")
        position[name] = snap_to_range(v, bound)
        if position[name] is None:
            raise ValidationError(f"{where}: {name} {v} out of range [-{bound}, {bound}]")
    lon, lat = position["lon"], position["lat"]
    ts = body.get("timestamp")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool):
        if not (math.isfinite(ts) and -AVRO_LONG <= ts < AVRO_LONG):
            raise ValidationError(f"{where}: timestamp {ts!r} is not an epoch millisecond")
        ts_ms = int(ts)
    elif isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f"{where}: timestamp {ts!r} is not ISO 8601") from None
        ts_ms = int((dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp() * 1000)
    else:
        raise ValidationError(f"{where}: timestamp is required (ISO 8601 or epoch milliseconds)")
    attrs = body.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise ValidationError(f"{where}: attributes must be an object")
    tenant = body.get("tenant_id", "default")  # 0, false or "" are not "no tenant"
    try:
        check_tenant(tenant)
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None
    return {"entity_id": entity, "tenant_id": tenant, "lon": float(lon), "lat": float(lat),
            "ts_ms": ts_ms, "attributes": {str(k): str(v) for k, v in attrs.items()}}


def _result(rec: dict) -> dict:
    return {"entity_id": rec["entity_id"], "timestamp": _iso(rec["ts_ms"]),
            "outcome": rec["outcome"], "reason": rec["reason"], "inside": rec["inside"],
            "events": [dict(e, timestamp=_iso(e["ts_ms"])) for e in rec["events"]]}


async def _evaluate(request: web.Request, locations: list[dict]) -> list[dict]:
    ctx = request.app[CONTEXT]
    codec: AvroCodec = ctx["codec"]
    waiter: EvaluationWaiter = ctx["waiter"]
    t = ctx["topic"]
    producer: AsyncProducer = ctx["producer"]
    ids = [uuid.uuid4().hex for _ in locations]
    futures = [waiter.expect(i) for i in ids]
    now = int(time.time() * 1000)
    acks: list[asyncio.Future] = []
    timeout = ctx["api"].evaluate_timeout_s
    reply_to = str(waiter.reply_partition)
    try:
        for rid, loc in zip(ids, locations):
            rec = dict(loc, attributes={**loc["attributes"], REPLY_ATTRIBUTE: rid,
                                        REPLY_PARTITION_ATTRIBUTE: reply_to}, produced_ms=now)
            acks.append(producer.produce(t, codec.encode(t, "LocationUpdate", rec),
                                         scoped(loc["tenant_id"], loc["entity_id"])))
        # every ack first: a record the broker refused is a 503, never a wait for its answer
        async with asyncio.timeout(timeout):  # not wait_for: it drops a cancel on 3.11 (gh-86296)
            done = await _acked_then_answered(acks, futures)
    except TimeoutError:
        if not all(a.done() and not a.cancelled() and a.exception() is None for a in acks):
            raise TransientError(f"the update was not acknowledged by the broker within {timeout:.0f}s; "
                                 "it may still be written") from None
        raise HTTPProblem(504, "Gateway Timeout",
                          f"the evaluator did not answer within {ctx['api'].evaluate_timeout_s:.0f}s; "
                          "the update is durable and will be evaluated when it is back") from None
    finally:
        for rid in ids:
            waiter.forget(rid)
        for a in acks:  # a failed ack nobody awaits any more is not an unretrieved exception
            if a.done() and not a.cancelled():
                a.exception()
    return [_result(r) for r in done]


async def _acked_then_answered(acks: list[asyncio.Future], answers: list[asyncio.Future]) -> list[dict]:
    await asyncio.gather(*acks)
    return await asyncio.gather(*answers)


async def evaluate(request: web.Request) -> web.Response:
    loc = parse_location(with_tenant(request, await json_body(request)))
    [result] = await _evaluate(request, [loc])
    if result["outcome"] in REJECTED or result["outcome"] == "invalid":
        raise HTTPProblem(422, "Unprocessable Entity",
                          f"{result['reason']}; the update was dead-lettered")
    return web.json_response(result)


async def evaluate_batch(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("locations"), list):
        raise ValidationError("expected {\"locations\": [...]}")
    limit = request.app[CONTEXT]["api"].max_batch
    if len(body["locations"]) > limit:
        raise HTTPProblem(413, "Payload Too Large",
                          f"{len(body['locations'])} locations; at most {limit} per batch")
    if not body["locations"]:
        raise ValidationError("locations is empty")
    locs = [parse_location(with_tenant(request, b), f"locations[{i}]") for i, b in enumerate(body["locations"])]
    return web.json_response({"results": await _evaluate(request, locs)})


def add_routes(app: web.Application, kafka: KafkaSettings, api: ApiSettings, codec: AvroCodec,
               producer: AsyncProducer, waiter: EvaluationWaiter) -> None:
    app[CONTEXT] = {"codec": codec, "waiter": waiter, "producer": producer, "api": api,
                    "topic": topic("geo.locations", kafka)}
    app.router.add_post("/api/v1/geoevent/evaluate", evaluate)
    app.router.add_post("/api/v1/geoevent/evaluate/batch", evaluate_batch)
