"""The keypress of a voice channel's call, from Twilio:

    POST /api/v1/webhooks/twilio/voice?alert_id=&channel=&delivery_id=   (form-encoded, X-Twilio-Signature)

No API key (services/api/auth.py SIGNED_PREFIX): Twilio's signature is the authentication. It is
verified with the auth token of the voice channel named in the URL, over the URL Twilio was
given (the channel's `ack_base_url`, else GEOFLUX_API_PUBLIC_URL, plus the path and query as
they arrive, so a proxy in front changes nothing) and the POST parameters. A missing or wrong
signature, a channel that is not a voice channel, or a call of another Twilio account is 403
and records nothing; an alert of another tenant than the channel's is 404, as everywhere.

Pressing 1 records an ACK on alerts.lifecycle exactly as the API and the PagerDuty webhook do
(escalation stops). Its action id comes from the CallSid, so Twilio retrying the webhook, or
someone replaying a captured request, records the same action again (acknowledging twice
changes nothing). Another key asks again. Answers are TwiML.
"""

from __future__ import annotations

import asyncio
import json

import structlog
from aiohttp import web

from connectors.channels.twilio import valid_signature
from connectors.channels.voice import ACK_DIGIT, ACK_PATH, answer, twiml
from services.control.alert_lifecycle import record_action
from geoflux.errors import NotFound
from services.api.problems import HTTPProblem
from services.api.routes_alerts import ALERTS
from services.api.routes_lifecycle import LIFECYCLE

log = structlog.get_logger("geoflux.api")


def _refuse(reason: str) -> HTTPProblem:
    # one answer for every refusal, so an unauthenticated caller learns no channel names
    log.warning("inbound webhook refused", origin="twilio", reason=reason)
    return HTTPProblem(403, "Forbidden", "the request is not signed by Twilio for a voice channel")


def _twiml(doc: str) -> web.Response:
    return web.Response(text=doc, content_type="text/xml")


def _voice_channel(request: web.Request, name: str | None) -> dict:
    try:
        rec = request.app[ALERTS]["config"].channels.get(name or "")
    except NotFound:
        raise _refuse(f"no voice channel named {name!r}") from None
    body = json.loads(rec["body"])
    if body["kind"] != "voice":
        raise _refuse(f"channel {name!r} is not a voice channel")
    return body


def add_routes(app: web.Application, public_url: str | None) -> None:
    async def voice(request: web.Request) -> web.Response:
        try:
            params = await request.post()
        except (UnicodeDecodeError, ValueError):
            raise _refuse("the body is not a UTF-8 form, which is all Twilio signs") from None
        pairs = [(k, v) for k, v in params.items() if isinstance(v, str)]
        channel = _voice_channel(request, request.query.get("channel"))
        s = channel["settings"]
        base = s.get("ack_base_url") or public_url
        if not base:
            raise _refuse("no public URL to verify against (ack_base_url or GEOFLUX_API_PUBLIC_URL)")
        url = base.rstrip("/") + request.raw_path
        if not valid_signature(s.get("auth_token", ""), url, pairs, request.headers.get("X-Twilio-Signature")):
            raise _refuse("X-Twilio-Signature does not match the URL and parameters")
        if params.get("AccountSid") != s.get("account_sid"):
            raise _refuse("the call belongs to another Twilio account than the channel's")
        alert_id, call = request.query.get("alert_id"), params.get("CallSid")
        if not alert_id or not call:
            raise HTTPProblem(422, "Unprocessable Entity", "alert_id (query) and CallSid are required")
        try:
            status = request.app[LIFECYCLE]["statuses"].get(alert_id)
        except NotFound:
            status = None
        if status is None or status["tenant_id"] != channel["tenant_id"]:
            raise HTTPProblem(404, "Not Found", f"alert {alert_id} not found")
        if params.get("Digits") != ACK_DIGIT:
            return _twiml(twiml("That key does not acknowledge the alert.", url, s))
        ctx = request.app[LIFECYCLE]
        rec = await asyncio.to_thread(
            record_action, ctx["kafka"], ctx["codec"], ctx["producer"], alert_id=alert_id,
            tenant_id=status["tenant_id"], action="ACK", by=f"voice:{s.get('to')}", origin="twilio",
            note=f"key {ACK_DIGIT} on call {call} ({request.query.get('delivery_id', '')})",
            dedup=f"twilio-call:{call}")
        log.info("alert acknowledged by keypress", alert_id=alert_id, action_id=rec["action_id"])
        return _twiml(answer("The alert is acknowledged. Thank you. Goodbye.", s))

    app.router.add_post(ACK_PATH, voice)
