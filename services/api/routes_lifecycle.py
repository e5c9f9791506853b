"""Alert lifecycle and SLA over HTTP:

    POST /api/v1/alerts/{id}/ack | /resolve   {"note": "..."}  -> 202, the action recorded
    GET  /api/v1/alerts/sla?window_s=3600                    -> attainment per severity and channel
    POST /api/v1/webhooks/pagerduty   (X-PagerDuty-Signature; no API key: the signature is the auth)
    POST /api/v1/webhooks/opsgenie    (X-Geoflux-Token)
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from connectors.channels.inbound import (parse_opsgenie, parse_pagerduty,
                                         verify_pagerduty, verify_token)
from connectors.kafka_producer import ReliableProducer
from geoflux.settings import AlertSettings, KafkaSettings
from schemas.codec import AvroCodec
from services.control.alert_lifecycle import record_action
from services.api.auth import check_visible, principal, tenant_filter
from geoflux.errors import BadSignature, NotFound
from services.api.problems import HTTPProblem, json_body
from services.control.sla import SlaView

log = structlog.get_logger("geoflux.api")
LIFECYCLE = web.AppKey("alert_lifecycle", dict)


def _record(request: web.Request, **kw) -> dict:
    ctx = request.app[LIFECYCLE]
    return record_action(ctx["kafka"], ctx["codec"], ctx["producer"], **kw)


def _lifecycle_handler(action: str):
    async def handler(request: web.Request) -> web.Response:
        aid = request.match_info["id"]
        status = request.app[LIFECYCLE]["statuses"].get(aid)
        check_visible(request, status["tenant_id"], f"alert {aid}")
        body = await json_body(request) if request.body_exists else {}
        note = body.get("note") if isinstance(body, dict) else None
        if note is not None and not isinstance(note, str):
            raise HTTPProblem(422, "Unprocessable Entity", "note must be a string")
        who = principal(request)
        rec = await asyncio.to_thread(_record, request, alert_id=aid, tenant_id=status["tenant_id"],
                                      action=action, by=request.headers.get("X-Geoflux-User", f"key:{who.key_id}"),
                                      origin="api", note=note)
        return web.json_response({"action_id": rec["action_id"], "alert_id": aid, "action": action,
                                  "previous_status": status["status"]}, status=202)
    return handler


async def sla(request: web.Request) -> web.Response:
    try:
        window_s = float(request.query.get("window_s", 0)) or None
    except ValueError:
        raise HTTPProblem(400, "Bad Request", "window_s must be a number of seconds") from None
    if window_s is not None and not 60 <= window_s <= 7 * 86_400:
        raise HTTPProblem(400, "Bad Request", "window_s must be between 60 and 604800")
    view: SlaView = request.app[LIFECYCLE]["sla"]
    rows = view.rows(window_s, tenant_filter(request))
    if principal(request).is_operator and not request.query.get("tenant_id"):
        from services.metrics import record_sla  # the platform-wide view is what is exported

        record_sla(rows)
    return web.json_response({"window_s": window_s or view.settings.sla_window_s, "items": rows})


async def _inbound(request: web.Request, origin: str, verify, parse) -> web.Response:
    body = await request.read()
    try:
        verify(body)
        parsed = parse(body)
    except BadSignature as exc:
        log.warning("inbound webhook refused", origin=origin, reason=str(exc))
        raise HTTPProblem(401, "Unauthorized", str(exc)) from None
    if parsed is None:
        return web.json_response({"ignored": True})  # an event we do not act on: still a 2xx
    alert_id, action, by = parsed
    try:
        status = request.app[LIFECYCLE]["statuses"].get(alert_id)
    except NotFound:
        raise HTTPProblem(404, "Not Found", f"alert {alert_id} not found") from None
    dedup = request.headers.get("X-Webhook-Id") or request.headers.get("X-Request-Id")
    rec = await asyncio.to_thread(_record, request, alert_id=alert_id, tenant_id=status["tenant_id"],
                                  action=action, by=by, origin=origin, dedup=dedup)
    return web.json_response({"action_id": rec["action_id"], "alert_id": alert_id, "action": action},
                             status=202)


def add_routes(app: web.Application, kafka: KafkaSettings, codec: AvroCodec,
               producer: ReliableProducer, statuses) -> list:
    settings = AlertSettings()
    view = SlaView(kafka, codec, settings).start()
    app[LIFECYCLE] = {"kafka": kafka, "codec": codec, "producer": producer, "statuses": statuses,
                      "sla": view}
    pd_secret = settings.pagerduty_webhook_secret.get_secret_value()
    og_token = settings.opsgenie_webhook_token.get_secret_value()

    async def pagerduty(request: web.Request) -> web.Response:
        return await _inbound(request, "pagerduty",
                              lambda body: verify_pagerduty(pd_secret, body, request.headers.get("X-PagerDuty-Signature")),
                              parse_pagerduty)

    async def opsgenie(request: web.Request) -> web.Response:
        return await _inbound(request, "opsgenie",
                              lambda _body: verify_token(og_token, request.headers.get("X-Geoflux-Token"), "Opsgenie"),
                              parse_opsgenie)

    app.router.add_get("/api/v1/alerts/sla", sla)
    app.router.add_post("/api/v1/alerts/{id}/ack", _lifecycle_handler("ACK"))
    app.router.add_post("/api/v1/alerts/{id}/resolve", _lifecycle_handler("RESOLVE"))
    app.router.add_post("/api/v1/webhooks/pagerduty", pagerduty)
    app.router.add_post("/api/v1/webhooks/opsgenie", opsgenie)
    return [view]
