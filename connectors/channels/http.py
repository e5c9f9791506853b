"""The HTTP channels: generic webhook (Standard Webhooks), Slack, Teams, PagerDuty, Opsgenie,
Azure Event Grid. Each builds its receiver's real wire format and applies its success rule."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from urllib.parse import urlparse

import aiohttp
from cryptography.fernet import Fernet, InvalidToken

from connectors.channels.base import ChannelConfig, Notification, classify_http
from geoflux.errors import PermanentError, TransientError, ValidationError

PD_SEVERITY = {"critical": "critical", "high": "error", "warning": "warning", "info": "info"}
OG_PRIORITY = {"critical": "P1", "high": "P2", "warning": "P3", "info": "P5"}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def _require_url(settings: dict, key: str = "url") -> None:
    url = settings.get(key)
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
        raise ValidationError(f"settings.{key} must be an http(s) URL")


def _require(settings: dict, key: str) -> None:
    if not isinstance(settings.get(key), str) or not settings[key]:
        raise ValidationError(f"settings.{key} is required")


class HttpChannel:
    kind = "http"
    ok_statuses: tuple[int, ...] = (200, 201, 202, 204)

    def __init__(self, config: ChannelConfig) -> None:
        self.name, self.config, self.s = config.name, config, config.settings
        self.timeout = aiohttp.ClientTimeout(total=float(self.s.get("timeout_s", 10)))
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def validate(cls, settings: dict) -> None:
        _require_url(settings)

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        """(url, body, headers) for this notification."""
        raise NotImplementedError

    def accept(self, status: int, body: str) -> bool:
        return status in self.ok_statuses

    def receipt(self, status: int, body: str) -> str:
        return f"{status}"

    def describe_error(self, status: int, body: str) -> str:
        """The answer's body as the reason says it (a receiver may have its own error format)."""
        return body

    async def send(self, n: Notification) -> str:
        url, body, headers = self.request(n)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                if self.accept(resp.status, text):
                    return self.receipt(resp.status, text)
                classify_http(resp.status, self.describe_error(resp.status, text), dict(resp.headers),
                              f"{self.kind} {self.name}")
                return ""  # unreachable: classify_http always raises
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise TransientError(f"{self.kind} {self.name}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class WebhookChannel(HttpChannel):
    """Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` =
    `v1,` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")); secrets may be given
    as `whsec_<base64>` (the spec's form) or as plain text."""

    kind = "webhook"

    @classmethod
    def validate(cls, settings: dict) -> None:
        _require_url(settings)
        _require(settings, "secret")

    @staticmethod
    def secret_bytes(secret: str) -> bytes:
        return base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()

    @classmethod
    def sign(cls, secret: str, msg_id: str, ts: int, body: bytes) -> str:
        mac = hmac.new(cls.secret_bytes(secret), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
        return "v1," + base64.b64encode(mac.digest()).decode()

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        # an OGC API - Processes subscriber callback carries statusInfo; an alert that merely has
        # a job_id label (a job's own alert) is an alert like any other
        if self.s.get("payload") == "ogc-job-status":
            payload = {"type": f"job.{n.labels['status']}", "timestamp": _iso(n.created_ms),
                       "data": {"jobID": n.labels["job_id"], "status": n.labels["status"],
                                "progress": int(n.labels.get("progress") or 0),
                                "message": n.labels.get("message") or None, "type": "process",
                                "links": [{"href": f"/jobs/{n.labels['job_id']}", "rel": "status"}]}}
        else:
            payload = {"type": f"alert.{n.action}", "timestamp": _iso(n.created_ms),
                       "data": {"alert_id": n.alert_id, "tenant_id": n.tenant_id,
                                "severity": n.severity, "title": n.title, "body": n.body,
                                "labels": n.labels}}
        body = json.dumps(payload).encode()
        ts = int(time.time())
        return self.s["url"], body, {
            "Content-Type": "application/json", "webhook-id": n.delivery_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": self.sign(self.s["secret"], n.delivery_id, ts, body)}


class SlackChannel(HttpChannel):
    """Incoming webhook. Success is 200 with body `ok` and nothing else."""

    kind = "slack"

    def accept(self, status: int, body: str) -> bool:
        return status == 200 and body.strip() == "ok"

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        icon = {"critical": ":rotating_light:", "high": ":warning:"}.get(n.severity, ":information_source:")
        prefix = "Resolved: " if n.action == "resolve" else ""
        body = {"text": f"{prefix}[{n.severity.upper()}] {n.title}",
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn",
                                                 "text": f"{icon} *{prefix}{n.title}*\n{n.body}"}},
                    {"type": "context", "elements": [{"type": "mrkdwn",
                                                      "text": f"alert `{n.alert_id}` · id `{n.delivery_id}`"}]}]}
        return self.s["url"], json.dumps(body).encode(), {"Content-Type": "application/json"}


class TeamsChannel(HttpChannel):
    """An Adaptive Card posted to a Teams Workflows (or legacy connector) URL; Workflows answer 202."""

    kind = "teams"

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "version": "1.4", "body": [
                    {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": True,
                     "text": ("Resolved: " if n.action == "resolve" else "") + n.title,
                     "color": "Attention" if n.severity in ("critical", "high") else "Default"},
                    {"type": "TextBlock", "wrap": True, "text": n.body},
                    {"type": "FactSet", "facts": [{"title": "Severity", "value": n.severity},
                                                  {"title": "Alert", "value": n.alert_id},
                                                  {"title": "Delivery", "value": n.delivery_id}]}]}
        body = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
             "content": card}]}
        return self.s["url"], json.dumps(body).encode(), {"Content-Type": "application/json"}


class PagerDutyChannel(HttpChannel):
    """Events API v2: trigger / resolve with the alert id as dedup_key; success is 202."""

    kind = "pagerduty"
    ok_statuses = (202,)

    @classmethod
    def validate(cls, settings: dict) -> None:
        settings.setdefault("url", "https://events.pagerduty.com/v2/enqueue")
        _require_url(settings)
        _require(settings, "routing_key")

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        body = {"routing_key": self.s["routing_key"], "event_action": n.action,
                "dedup_key": n.alert_id}
        if n.action == "trigger":
            body["payload"] = {"summary": n.title[:1024], "source": self.s.get("source", "geoflux"),
                               "severity": PD_SEVERITY.get(n.severity, "info"),
                               "timestamp": _iso(n.created_ms),
                               "custom_details": {"body": n.body, **n.labels,
                                                  "delivery_id": n.delivery_id}}
        url = self.s.get("url", "https://events.pagerduty.com/v2/enqueue")
        return url, json.dumps(body).encode(), {"Content-Type": "application/json"}


class OpsgenieChannel(HttpChannel):
    """Alert API v2: create with `alias` = alert id (Opsgenie's de-duplication), close by alias;
    `Authorization: GenieKey ...`; success is 202."""

    kind = "opsgenie"
    ok_statuses = (202,)

    @classmethod
    def validate(cls, settings: dict) -> None:
        settings.setdefault("url", "https://api.opsgenie.com")
        _require_url(settings)
        _require(settings, "api_key")

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        base = self.s.get("url", "https://api.opsgenie.com").rstrip("/")
        headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {self.s['api_key']}"}
        if n.action == "resolve":
            body = {"source": "geoflux", "note": n.body or "resolved"}
            return f"{base}/v2/alerts/{n.alert_id}/close?identifierType=alias", json.dumps(body).encode(), headers
        body = {"message": n.title[:130], "alias": n.alert_id, "description": n.body[:15000],
                "priority": OG_PRIORITY.get(n.severity, "P3"), "source": "geoflux",
                "details": {**n.labels, "delivery_id": n.delivery_id},
                "tags": [n.severity, n.tenant_id]}
        return f"{base}/v2/alerts", json.dumps(body).encode(), headers


class EventGridChannel(HttpChannel):
    """Azure Event Grid topic: the Event Grid schema (default) or CloudEvents 1.0
    (`settings.schema = "cloudevents"`), authenticated with `aeg-sas-key`."""

    kind = "eventgrid"

    @classmethod
    def validate(cls, settings: dict) -> None:
        _require_url(settings)
        _require(settings, "sas_key")
        if settings.get("schema", "eventgrid") not in ("eventgrid", "cloudevents"):
            raise ValidationError("settings.schema must be eventgrid or cloudevents")

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        data = {"alert_id": n.alert_id, "tenant_id": n.tenant_id, "severity": n.severity,
                "title": n.title, "body": n.body, "labels": n.labels, "action": n.action}
        event_type = f"Geoflux.Alert.{n.action.capitalize()}"
        if self.s.get("schema", "eventgrid") == "cloudevents":
            events = [{"specversion": "1.0", "id": n.delivery_id, "source": "/geoflux/alerts",
                       "type": event_type, "time": _iso(n.created_ms),
                       "subject": f"tenants/{n.tenant_id}/alerts/{n.alert_id}",
                       "datacontenttype": "application/json", "data": data}]
            ctype = "application/cloudevents-batch+json; charset=utf-8"
        else:
            events = [{"id": n.delivery_id, "eventType": event_type,
                       "subject": f"tenants/{n.tenant_id}/alerts/{n.alert_id}",
                       "eventTime": _iso(n.created_ms), "data": data, "dataVersion": "1.0"}]
            ctype = "application/json"
        return self.s["url"], json.dumps(events).encode(), {"Content-Type": ctype,
                                                            "aeg-sas-key": self.s["sas_key"]}


# -- job callbacks (OGC API - Processes subscribers) ----------------------------------------------
# Signed as Standard Webhooks (WebhookChannel): `webhook-signature: v1,<base64 HMAC-SHA256(secret,
# "{webhook-id}.{webhook-timestamp}.{body}")>`. The secret is the subscriber's own when its execute
# request gave one, else the install's. A subscriber's secret never travels in clear: the API seals
# it with a key derived from the install secret, and only the delivery worker opens it.
PUBLIC_DEFAULT_SECRETS = {"geoflux-callbacks"}  # what earlier versions shipped: it signs nothing
MIN_SECRET_CHARS = 16
MAX_SECRET_CHARS = 1024
SEALED = "sealed:v1:"


class CallbackSecretMissing(PermanentError):
    error_class = "no-callback-secret"


def install_callback_secret(secret: str | None, secret_file: str | None) -> str:
    """The install's callback secret (the file wins), or CallbackSecretMissing with the reason."""
    value, where = (secret or "", "GEOFLUX_ALERT_CALLBACK_SECRET")
    if secret_file:
        where = f"GEOFLUX_ALERT_CALLBACK_SECRET_FILE ({secret_file})"
        try:
            with open(secret_file, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise CallbackSecretMissing(f"job callback secret unreadable: {where}: {exc}") from None
    if not value:
        raise CallbackSecretMissing("no job callback secret is configured: set GEOFLUX_ALERT_CALLBACK_SECRET_FILE "
                                    "or GEOFLUX_ALERT_CALLBACK_SECRET (`geoflux up` generates one)")
    if value in PUBLIC_DEFAULT_SECRETS:
        raise CallbackSecretMissing(f"{where} is the public default of earlier versions: anyone could sign "
                                    "with it; set a secret of your own")
    if len(value) < MIN_SECRET_CHARS:
        raise CallbackSecretMissing(f"{where} is shorter than {MIN_SECRET_CHARS} characters")
    return value


def check_subscriber_secret(secret: object) -> str:
    if (not isinstance(secret, str) or not MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS
            or not secret.isprintable()):
        raise ValidationError(f"subscriber.secret must be {MIN_SECRET_CHARS}-{MAX_SECRET_CHARS} printable "
                              "characters")
    return secret


def _sealer(install_secret: str) -> Fernet:
    key = hmac.new(install_secret.encode(), b"geoflux job callback secret sealing v1", hashlib.sha256)
    return Fernet(base64.urlsafe_b64encode(key.digest()))


def seal_secret(install_secret: str, secret: str) -> str:
    return SEALED + _sealer(install_secret).encrypt(secret.encode()).decode()


def unseal_secret(install_secret: str, sealed: str) -> str:
    if not sealed.startswith(SEALED):
        raise PermanentError("a job callback's subscriber secret is not sealed; refusing to sign with it")
    try:
        return _sealer(install_secret).decrypt(sealed[len(SEALED):].encode()).decode()
    except InvalidToken:
        raise PermanentError("the subscriber's callback secret was sealed with another install secret "
                             "(was GEOFLUX_ALERT_CALLBACK_SECRET rotated?)") from None


def job_callback_config(tenant_id: str, url: str, install_secret: str, sealed: str | None) -> ChannelConfig:
    """The ad-hoc webhook channel of one job callback, signing with the subscriber's secret when
    it has one, else the install's."""
    secret = unseal_secret(install_secret, sealed) if sealed else install_secret
    return ChannelConfig("job-callback", "webhook", tenant_id,
                         {"url": url, "secret": secret, "payload": "ogc-job-status"})
