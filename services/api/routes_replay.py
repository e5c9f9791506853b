"""POST /api/v1/replay: a topic's records by event-time range or offset range, as NDJSON.

Body, one of:
  {"from": T, "to": T?}                 event time, ISO 8601 or epoch ms; from inclusive, to
                                        exclusive (default: now)
  {"from_offsets": {"0": 12}, "to_offsets": {"0": 40}?}   per partition, from inclusive, to
                                        exclusive (default: the end); unnamed partitions unread
plus optional `topic` (`geo.geofence-events`, default, or `geo.cep-matches`), filters
`geofence_id`, `entity_id`, `event_type` (events) / `pattern_id` (matches), `tenant_id`
(operators; a tenant key may only name its own), `margin_s`.

Each line is {"partition", "offset", "timestamp_ms", "key", "record"}, partition after
partition, each in offset order (geofence events are keyed by geofence, so that is per-geofence
order); the last line is {"summary": {...}} with `complete` false and the reason if the
deadline (`GEOFLUX_REPLAY_TIMEOUT_S`) or Kafka stopped it. The end offsets are the last stable
offsets when the request starts, so a replay ends while producers keep writing.

Time ranges: record timestamps are production times, so the range is scanned `margin_s` wider
in record time (ListOffsets by timestamp) and filtered exactly on the event time (`ts_ms`;
`end_ms` for matches). An event written more than `margin_s` away from its event time (a
backfill of old history) is only found with a larger `margin_s` or by offsets.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from aiohttp import web
from confluent_kafka import KafkaException
from confluent_kafka.admin import OffsetSpec

from connectors.kafka_admin import admin_client
from connectors.offsets import list_offsets, parse_instant_ms, partitions_of
from connectors.range_reader import RangeReader, RawRecord
from geoflux.errors import ValidationError
from geoflux.settings import KafkaSettings, ReplaySettings
from schemas.catalogue import topic as physical
from schemas.codec import AvroCodec
from services.api.auth import principal, tenant_filter
from services.api.problems import HTTPProblem, json_body

# logical topic -> (schema, event-time field, filters that field set supports)
TOPICS = {
    "geo.geofence-events": ("GeofenceEvent", "ts_ms", ("geofence_id", "entity_id", "event_type")),
    "geo.cep-matches": ("CepMatch", "end_ms", ("pattern_id",)),
}
_FIELDS = {"from", "to", "from_offsets", "to_offsets", "topic", "tenant_id", "margin_s",
           "geofence_id", "entity_id", "event_type", "pattern_id"}
_ALL_FILTERS = {"geofence_id", "entity_id", "event_type", "pattern_id"}
EVENT_TYPES = {"ENTER", "EXIT", "DWELL"}


@dataclass
class ReplayRequest:
    logical: str
    from_ms: int | None = None
    to_ms: int | None = None
    from_offsets: dict[int, int] | None = None
    to_offsets: dict[int, int] = field(default_factory=dict)
    filters: dict[str, str] = field(default_factory=dict)
    margin_ms: int = 0

    @property
    def by_time(self) -> bool:
        return self.from_ms is not None


def _offsets(name: str, raw: object) -> dict[int, int]:
    if not isinstance(raw, dict) or not raw:
        raise ValidationError(f'{name} must be a non-empty object {{"<partition>": offset}}')
    out = {}
    for p, o in raw.items():
        if not (isinstance(p, str) and p.isdigit()):
            raise ValidationError(f"{name}: partition {p!r} is not a non-negative integer")
        if isinstance(o, bool) or not isinstance(o, int) or o < 0:
            raise ValidationError(f"{name}[{p}]: offset {o!r} is not a non-negative integer")
        out[int(p)] = o
    return out


def parse_request(body: object, settings: ReplaySettings, now_ms: int) -> ReplayRequest:
    """Pure: the body -> a request, or ValidationError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise ValidationError(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FIELDS))}")
    logical = body.get("topic", "geo.geofence-events")
    if not isinstance(logical, str) or logical not in TOPICS:
        raise ValidationError(f"topic {logical!r} cannot be replayed; one of {', '.join(TOPICS)}")
    by_time, by_offsets = "from" in body, "from_offsets" in body
    if by_time == by_offsets:
        raise ValidationError("give exactly one of `from` (event time) or `from_offsets`")
    if by_time and "to_offsets" in body or by_offsets and "to" in body:
        raise ValidationError("`to` goes with `from`, `to_offsets` with `from_offsets`")
    req = ReplayRequest(logical)
    supported = TOPICS[logical][2]
    for name in sorted(_ALL_FILTERS & set(body)):
        value = body[name]
        if name not in supported:
            raise ValidationError(f"filter {name} does not apply to {logical}")
        if not isinstance(value, str) or not value:
            raise ValidationError(f"{name} must be a non-empty string")
        if name == "event_type" and value not in EVENT_TYPES:
            raise ValidationError(f"event_type {value!r}: one of {', '.join(sorted(EVENT_TYPES))}")
        req.filters[name] = value
    if by_time:
        req.from_ms = parse_instant_ms("from", body["from"])
        req.to_ms = parse_instant_ms("to", body["to"]) if body.get("to") is not None else now_ms
        if req.from_ms >= req.to_ms:
            raise ValidationError(f"from ({req.from_ms}) must be before to ({req.to_ms}): the range is "
                                  "from inclusive, to exclusive")
        margin = body.get("margin_s", settings.margin_s)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) \
                or not 0 <= margin <= settings.max_margin_s:
            raise ValidationError(f"margin_s must be a number in 0..{settings.max_margin_s:g}")
        req.margin_ms = int(margin * 1000)
    else:
        if "margin_s" in body:
            raise ValidationError("margin_s applies to a time range only")
        req.from_offsets = _offsets("from_offsets", body["from_offsets"])
        if "to_offsets" in body:
            req.to_offsets = _offsets("to_offsets", body["to_offsets"])
        extra = sorted(set(req.to_offsets) - set(req.from_offsets))
        if extra:
            raise ValidationError(f"to_offsets names partition(s) {extra} that from_offsets does not")
        for p, hi in req.to_offsets.items():
            if hi < req.from_offsets[p]:
                raise ValidationError(f"partition {p}: to_offsets {hi} is before from_offsets "
                                      f"{req.from_offsets[p]}")
    return req


def body_tenant(request: web.Request, body: dict) -> str | None:
    """`tenant_filter` for the query, and the same rule for a body `tenant_id`."""
    tenant = tenant_filter(request)
    named = body.get("tenant_id")
    if named is None:
        return tenant
    if not isinstance(named, str) or not named:
        raise ValidationError("tenant_id must be a non-empty string")
    if not principal(request).is_operator and named != tenant:
        raise HTTPProblem(403, "Forbidden", f"this API key may not read tenant {named!r}")
    if tenant is not None and named != tenant:
        raise ValidationError(f"tenant_id {named!r} in the body and {tenant!r} in the query differ")
    return named


def scan_ranges(kafka: KafkaSettings, t: str, req: ReplayRequest) -> dict[int, tuple[int, int]]:
    """Blocking: partition -> (first, end) offsets to read, fixed now."""
    admin = admin_client(kafka)
    parts = partitions_of(admin, t, kafka)
    low = list_offsets(admin, t, parts, OffsetSpec.earliest(), kafka)
    end = list_offsets(admin, t, parts, OffsetSpec.latest(), kafka)  # last stable offsets
    if req.by_time:
        first = list_offsets(admin, t, parts, OffsetSpec.for_timestamp(max(0, req.from_ms - req.margin_ms)), kafka)
        last = list_offsets(admin, t, parts, OffsetSpec.for_timestamp(req.to_ms + req.margin_ms), kafka)
        return {p: (max(first[p], low[p]), min(last[p], end[p])) for p in parts}
    unknown = sorted(set(req.from_offsets) - set(parts))
    if unknown:
        raise ValidationError(f"{t} has no partition(s) {unknown}: it has 0..{len(parts) - 1}")
    return {p: (max(lo, low[p]), min(req.to_offsets.get(p, end[p]), end[p]))
            for p, lo in req.from_offsets.items()}


def wanted(rec: dict, req: ReplayRequest, tenant: str | None, time_field: str) -> bool:
    if tenant is not None and rec.get("tenant_id") != tenant:
        return False
    if req.by_time and not req.from_ms <= rec[time_field] < req.to_ms:
        return False
    return all(rec.get(k) == v for k, v in req.filters.items())


def _line(raw: RawRecord, rec: dict) -> str:
    key = raw.key.decode("utf-8", "replace") if raw.key is not None else None
    return json.dumps({"partition": raw.partition, "offset": raw.offset,
                       "timestamp_ms": raw.timestamp_ms, "key": key, "record": rec},
                      separators=(",", ":"), default=str) + "\n"


def add_routes(app: web.Application, kafka: KafkaSettings, codec: AvroCodec,
               settings: ReplaySettings | None = None) -> None:
    settings = settings or ReplaySettings()

    async def replay(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        body = await json_body(request)
        tenant = body_tenant(request, body) if isinstance(body, dict) else tenant_filter(request)
        req = parse_request(body, settings, int(time.time() * 1000))
        schema, time_field, _ = TOPICS[req.logical]
        t = physical(req.logical, kafka)
        ranges = await asyncio.to_thread(scan_ranges, kafka, t, req)
        reader = RangeReader(kafka, t, ranges, started + settings.timeout_s)
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        scanned = returned = undecodable = 0
        error = None
        try:
            while not reader.done:
                batch = await asyncio.to_thread(reader.next_batch)
                lines = []
                for raw in batch:
                    scanned += 1
                    try:
                        rec = codec.decode(raw.value, schema)
                    except ValidationError:  # a tombstone or a foreign record: counted, not fatal
                        undecodable += 1
                        continue
                    if wanted(rec, req, tenant, time_field):
                        lines.append(_line(raw, rec))
                if lines:
                    returned += len(lines)
                    await resp.write("".join(lines).encode())
        except KafkaException as exc:  # the status is already sent: the summary carries it
            error = f"Kafka: {exc.args[0].str()}"
        finally:
            await asyncio.to_thread(reader.close)
        summary = {"topic": req.logical, "mode": "time" if req.by_time else "offsets",
                   "partitions": {str(p): list(r) for p, r in sorted(ranges.items())},
                   "scanned": scanned, "returned": returned, "undecodable": undecodable,
                   "complete": error is None and not reader.timed_out,
                   "elapsed_ms": int((time.monotonic() - started) * 1000)}
        if req.by_time:
            summary.update(from_ms=req.from_ms, to_ms=req.to_ms, margin_ms=req.margin_ms)
        if error or reader.timed_out:
            summary["reason"] = error or f"deadline of {settings.timeout_s:g} s reached"
        await resp.write((json.dumps({"summary": summary}) + "\n").encode())
        await resp.write_eof()
        return resp

    app.router.add_post("/api/v1/replay", replay)
