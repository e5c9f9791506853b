"""/api/v1/cep: pattern definitions (validated, versioned, picked up by running workers) and
the matches they produced."""

from __future__ import annotations

from collections import deque

from aiohttp import web

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api import routes_config
from services.api.auth import tenant_filter
from services.control.config_store import ConfigStore
from services.api.problems import HTTPProblem
from streams.cep.patterns import parse_pattern

MATCHES = web.AppKey("cep_matches", TopicReader)
RECENT = web.AppKey("cep_recent", deque)
AGGREGATES = web.AppKey("cep_aggregates", dict)


async def list_matches(request: web.Request) -> web.Response:
    recent: deque = request.app[RECENT]
    pid, tenant = request.query.get("pattern_id"), tenant_filter(request)
    with request.app[MATCHES].lock:
        items = [m for m in recent if (not pid or m["pattern_id"] == pid)
                 and (not tenant or m["tenant_id"] == tenant)]
    return web.json_response({"items": items[::-1], "total": len(items)})


async def list_aggregates(request: web.Request) -> web.Response:
    """GET /api/v1/cep/aggregates/{pattern_id}[?geofence_id=&closed=true|false&from_ms=&to_ms=]"""
    view = request.app[AGGREGATES]
    pid = request.match_info["pattern_id"]
    tenant = tenant_filter(request)
    q = request.query
    try:
        lo, hi = int(q.get("from_ms", 0)), int(q.get("to_ms", 2**62))
    except ValueError:
        raise HTTPProblem(400, "Bad Request", "from_ms and to_ms must be integers") from None
    with view["lock"]:
        items = [a for a in view["items"].values() if a["pattern_id"] == pid
                 and (not tenant or a["tenant_id"] == tenant)
                 and (not q.get("geofence_id") or a["geofence_id"] == q["geofence_id"])
                 and (q.get("closed") is None or a["closed"] == (q["closed"] == "true"))
                 and lo <= a["start_ms"] < hi]
    items.sort(key=lambda a: (a["geofence_id"], a["start_ms"]))
    return web.json_response({"items": items, "total": len(items)})


def add_routes(app: web.Application, kafka: KafkaSettings, codec: AvroCodec,
               producer: ReliableProducer) -> list:
    patterns = ConfigStore(kafka, codec, topic("geo.cep-patterns", kafka), "pattern",
                           lambda body, pid: parse_pattern(body, pid), "pattern_id", producer).start()
    recent: deque = deque(maxlen=10_000)
    seen: set[str] = set()

    def keep(_key: str, rec: dict | None, _msg) -> bool:
        if rec is None or rec["match_id"] in seen:
            return False  # matches are de-duplicated by their deterministic id
        seen.add(rec["match_id"])
        recent.append({k: v for k, v in rec.items()})
        return True

    matches = TopicReader(kafka, topic("geo.cep-matches", kafka), "CepMatch", codec, keep).load().follow()
    app[MATCHES], app[RECENT] = matches, recent
    aggregates: dict = {}

    def upsert(key: str, rec: dict | None, _msg) -> bool:
        if rec is None:
            return aggregates.pop(key, None) is not None
        aggregates[key] = rec
        return True

    agg_reader = TopicReader(kafka, topic("geo.cep-aggregates", kafka), "CepAggregate", codec,
                             upsert).load().follow()
    app[AGGREGATES] = {"items": aggregates, "lock": agg_reader.lock}
    app.router.add_get("/api/v1/cep/aggregates/{pattern_id}", list_aggregates)
    routes_config.mount(app, "/api/v1/cep/patterns", patterns)
    app.router.add_get("/api/v1/cep/matches", list_matches)
    return [patterns, matches, agg_reader]
