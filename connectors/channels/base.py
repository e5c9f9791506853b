"""What every channel shares: the notification it sends, how answers are classified, the registry.

Answer classes (the same for every HTTP channel): 429 is transient and honours Retry-After;
5xx, 408, timeouts and connection errors are transient; 410 means the endpoint is gone (it is
disabled, no more attempts); every other 4xx is permanent. Each channel adds its own success
rule (Slack: 200 with body `ok`; PagerDuty/Opsgenie: 202; ...).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from datetime import datetime, timezone

from geoflux.errors import PermanentError, TransientError, ValidationError

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


@dataclass(frozen=True, slots=True)
class Notification:
    delivery_id: str  # the idempotency key the receiver can use
    alert_id: str
    tenant_id: str
    severity: str
    title: str
    body: str
    labels: dict[str, str] = field(default_factory=dict)
    created_ms: int = 0
    action: str = "trigger"  # trigger | resolve


class RetryLater(TransientError):
    """Transient, with the receiver's own idea of when (429 Retry-After)."""

    error_class = "rate_limited"

    def __init__(self, message: str, retry_after_s: float | None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EndpointGone(PermanentError):
    """410: the receiver says this endpoint will never work again; it is disabled."""

    error_class = "gone"


class Channel(Protocol):
    """What the delivery worker and the API use of a channel; built from its config by the
    registry below (`build_channel`)."""

    name: str
    kind: str

    @classmethod
    def validate(cls, settings: dict) -> None:
        """Refuses settings this kind cannot work with (ValidationError with the reason), when
        the channel is written: a bad channel is a 422, not a delivery that fails later."""
        ...

    async def send(self, n: Notification) -> str:
        """Delivers or raises TransientError / PermanentError; returns a receipt for the log."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str
    kind: str
    tenant_id: str
    settings: dict[str, Any]

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "tenant_id": self.tenant_id,
                "settings": self.settings}

    def public(self) -> dict:
        """Settings with secrets masked, for API answers and logs."""
        masked = {k: ("***" if any(s in k for s in ("secret", "key", "password", "token")) else v)
                  for k, v in self.settings.items()}
        return {"name": self.name, "kind": self.kind, "tenant_id": self.tenant_id,
                "settings": masked}


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify_http(status: int, body: str, headers: dict[str, str], what: str) -> None:
    """Raises the right error for a non-success answer."""
    detail = f"{what}: HTTP {status} {body[:200]!r}"
    if status == 429:
        raise RetryLater(detail, retry_after_seconds(headers.get("Retry-After")))
    if status == 410:
        raise EndpointGone(detail)
    if status >= 500 or status == 408:
        raise TransientError(detail)
    raise PermanentError(detail)


_KINDS = {
    "webhook": "connectors.channels.http:WebhookChannel",
    "slack": "connectors.channels.http:SlackChannel",
    "teams": "connectors.channels.http:TeamsChannel",
    "pagerduty": "connectors.channels.http:PagerDutyChannel",
    "opsgenie": "connectors.channels.http:OpsgenieChannel",
    "eventgrid": "connectors.channels.http:EventGridChannel",
    "email": "connectors.channels.email:EmailChannel",
    "sns": "connectors.channels.sns:SnsChannel",
    "sms": "connectors.channels.sms:SmsChannel",
    "voice": "connectors.channels.voice:VoiceChannel",
    "inbox": "connectors.channels.inbox:InboxChannel",
}


def channel_kinds() -> list[str]:
    return sorted(_KINDS)


def _cls(kind: str):
    module, _, name = _KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def parse_channel(body: object, name: str | None = None) -> ChannelConfig:
    if not isinstance(body, dict):
        raise ValidationError("a channel must be a JSON object")
    name = name or body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError("name must be 1-80 characters of letters, digits, . _ -")
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:  # a JSON object or array is no kind
        raise ValidationError(f"kind must be one of {', '.join(channel_kinds())}")
    tenant = body.get("tenant_id")
    if not isinstance(tenant, str) or not tenant:
        raise ValidationError("tenant_id is required")
    settings = body.get("settings") or {}
    if not isinstance(settings, dict):
        raise ValidationError("settings must be an object")
    config = ChannelConfig(name, kind, tenant, settings)
    _cls(kind).validate(settings)
    return config


def build_channel(config: ChannelConfig) -> Channel:
    return _cls(config.kind)(config)
