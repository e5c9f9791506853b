"""Acknowledgements coming back from receivers: PagerDuty v3 webhooks (HMAC-signed) and
Opsgenie outgoing webhooks. Pure: verification and parsing, no I/O.

Our PagerDuty `dedup_key` and Opsgenie `alias` are the alert id, so their incidents name our
alert directly.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from geoflux.errors import BadSignature, ValidationError

PD_ACTIONS = {"incident.acknowledged": "ACK", "incident.resolved": "RESOLVE"}
OG_ACTIONS = {"Acknowledge": "ACK", "Close": "RESOLVE"}


def verify_pagerduty(secret: str, body: bytes, header: str | None) -> None:
    """`X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>[,v1=...]` (several while a
    secret is rotated: any one matching is enough)."""
    if not secret:
        raise BadSignature("PagerDuty webhooks are not configured (GEOFLUX_ALERT_PAGERDUTY_WEBHOOK_SECRET)")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    offered = [s.strip()[3:] for s in (header or "").split(",") if s.strip().startswith("v1=")]
    if not any(hmac.compare_digest(expected, s) for s in offered):
        raise BadSignature("X-PagerDuty-Signature does not match the body")


def verify_token(expected: str, offered: str | None, what: str) -> None:
    if not expected:
        raise BadSignature(f"{what} webhooks are not configured")
    if not offered or not hmac.compare_digest(expected.encode(), offered.encode()):
        raise BadSignature(f"{what} webhook token does not match")


def _json(body: bytes) -> dict:
    try:
        doc = json.loads(body)
    except ValueError:
        raise ValidationError("webhook body is not JSON") from None
    if not isinstance(doc, dict):
        raise ValidationError("webhook body must be a JSON object")
    return doc


def parse_pagerduty(body: bytes) -> tuple[str, str, str] | None:
    """-> (alert id, ACK | RESOLVE, who), or None for an event we do not act on."""
    event = _json(body).get("event") or {}
    action = PD_ACTIONS.get(event.get("event_type"))
    data = event.get("data") or {}
    if action is None:
        return None
    alert_id = data.get("incident_key")
    if not isinstance(alert_id, str) or not alert_id:
        raise ValidationError("event.data.incident_key (our dedup_key) is missing")
    agent = (event.get("agent") or {}).get("summary") or "pagerduty"
    return alert_id, action, f"pagerduty:{agent}"


def parse_opsgenie(body: bytes) -> tuple[str, str, str] | None:
    doc = _json(body)
    action = OG_ACTIONS.get(doc.get("action"))
    if action is None:
        return None
    alert = doc.get("alert") or {}
    alert_id = alert.get("alias")
    if not isinstance(alert_id, str) or not alert_id:
        raise ValidationError("alert.alias (our alert id) is missing")
    return alert_id, action, f"opsgenie:{alert.get('username') or 'opsgenie'}"
