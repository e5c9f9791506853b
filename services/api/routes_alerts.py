"""/api/v1/alerts (rules, channels, silences, alert status) and /api/v1/dlq."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from connectors.channels.base import ChannelConfig
from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.api import routes_config, routes_lifecycle
from services.control.alert_config import AlertConfig
from services.api.auth import check_visible, require_operator, tenant_filter
from services.control.dlq import DLQ_VALUE_SCHEMAS, DlqView, fresh_delivery
from geoflux.errors import NotFound
from services.api.problems import HTTPProblem, page

ALERTS = web.AppKey("alerts_context", dict)
STATUSES = ("PENDING", "SENT", "PARTIALLY_SENT", "FAILED", "DEAD_LETTERED", "ABANDONED",
            "SUPPRESSED", "ACKNOWLEDGED", "RESOLVED")


class AlertStatusView:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec) -> None:
        self.latest: dict[str, dict] = {}
        self.reader = TopicReader(kafka, topic("alerts.status", kafka), "AlertStatus", codec,
                                  self._apply)

    def _apply(self, key: str, rec: dict | None, _msg) -> bool:
        if rec is not None:
            self.latest[key] = rec
        return rec is not None

    def start(self) -> "AlertStatusView":
        self.reader.load().follow()
        return self

    def get(self, alert_id: str) -> dict:
        with self.reader.lock:
            rec = self.latest.get(alert_id)
        if rec is None:
            raise NotFound(f"alert {alert_id} not found")
        return rec

    def all(self) -> list[dict]:
        with self.reader.lock:
            return list(self.latest.values())

    def channel_delivered(self, dlq: dict, codec: AvroCodec) -> bool:
        """A dead-lettered delivery counts as resolved once its channel was delivered later."""
        try:
            req = codec.decode(dlq["original_value"], "DeliveryAttempt")
        except Exception:
            return False
        with self.reader.lock:
            st = self.latest.get(req["alert_id"])
        return bool(st and st["channels"].get(req["channel"]) == "SENT")

    def close(self) -> None:
        self.reader.close()


def _channel_public(rec: dict) -> dict:
    body = json.loads(rec["body"])
    masked = ChannelConfig(body["name"], body["kind"], body["tenant_id"], body["settings"]).public()
    return {**masked, "version": rec["version"], "updated_ms": rec["updated_ms"]}


async def list_alerts(request: web.Request) -> web.Response:
    view: AlertStatusView = request.app[ALERTS]["statuses"]
    offset, limit = page(request)
    tenant = tenant_filter(request)
    status = request.query.get("status")
    if status and status not in STATUSES:
        raise HTTPProblem(400, "Bad Request", f"status must be one of {', '.join(STATUSES)}")
    items = [s for s in view.all()
             if (not status or s["status"] == status)
             and (not request.query.get("severity") or s["severity"] == request.query["severity"])
             and (not tenant or s["tenant_id"] == tenant)]
    items.sort(key=lambda s: s["created_ms"], reverse=True)
    return web.json_response({"items": items[offset:offset + limit], "total": len(items),
                              "offset": offset, "limit": limit})


async def get_alert(request: web.Request) -> web.Response:
    alert = request.app[ALERTS]["statuses"].get(request.match_info["id"])
    check_visible(request, alert["tenant_id"], f"alert {request.match_info['id']}")
    return web.json_response(alert)


def _dlq_views(request: web.Request) -> dict[str, DlqView]:
    # dead letters hold raw records of any tenant (some undecodable): operators only
    require_operator(request, "the dead-letter queues")
    return request.app[ALERTS]["dlqs"]


async def list_dlq(request: web.Request) -> web.Response:
    views = _dlq_views(request)
    queue = request.query.get("queue")
    if queue and queue not in views:
        raise HTTPProblem(400, "Bad Request", f"queue must be one of {', '.join(views)}")
    include_closed = request.query.get("all") in ("1", "true")
    items = [item for name, v in views.items() if not queue or name == queue
             for item in v.list(include_closed)]
    return web.json_response({"items": items, "total": len(items)})


def _find(request: web.Request) -> DlqView:
    dlq_id = request.match_info["id"]
    for view in _dlq_views(request).values():
        try:
            view.get_raw(dlq_id)
            return view
        except NotFound:
            continue
    raise NotFound(f"DLQ record {dlq_id} not found")


async def show_dlq(request: web.Request) -> web.Response:
    return web.json_response(_find(request).get(request.match_info["id"]))


async def redrive_dlq(request: web.Request) -> web.Response:
    view = _find(request)
    result = await asyncio.to_thread(view.redrive, request.match_info["id"],
                                     request.headers.get("X-Geoflux-User", "api"))
    return web.json_response(result, status=202)


async def metrics(request: web.Request) -> web.Response:
    from services.metrics import DLQ_DEPTH, exposition

    for name, view in request.app[ALERTS]["dlqs"].items():
        DLQ_DEPTH.labels(name).set(len(view.list()))
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_routes(app: web.Application, kafka: KafkaSettings, codec: AvroCodec,
               producer: ReliableProducer, rules_file=None) -> list:
    """Mounts the routes; returns what must be closed on shutdown."""
    config = AlertConfig(kafka, codec, producer).start()
    if rules_file:
        config.load_file(rules_file)
    statuses = AlertStatusView(kafka, codec).start()
    dlqs = {
        "alerts": DlqView(kafka, codec, "alerts", DLQ_VALUE_SCHEMAS["alerts"], producer, fresh_delivery,
                          lambda rec: statuses.channel_delivered(rec, codec)).start(),
        **{name: DlqView(kafka, codec, name, DLQ_VALUE_SCHEMAS[name], producer).start()
           for name in ("jobs", "locations", "cep", "audit")},
    }
    app[ALERTS] = {"config": config, "statuses": statuses, "dlqs": dlqs}
    routes_config.mount(app, "/api/v1/alerts/rules", config.rules)
    routes_config.mount(app, "/api/v1/alerts/channels", config.channels, _channel_public)
    routes_config.mount(app, "/api/v1/silences", config.silences)
    routes_config.mount(app, "/api/v1/alerts/escalations", config.escalations)
    closeables = routes_lifecycle.add_routes(app, kafka, codec, producer, statuses)  # before /{id}
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/{id}", get_alert)
    app.router.add_get("/api/v1/dlq", list_dlq)
    app.router.add_get("/api/v1/dlq/{id}", show_dlq)
    app.router.add_post("/api/v1/dlq/{id}/redrive", redrive_dlq)
    app.router.add_get("/metrics", metrics)
    return [config, statuses, *dlqs.values(), *closeables]
