"""SMS to one phone number, through Amazon SNS (default) or Twilio (`settings.provider`).

    {"name": "ana-sms", "kind": "sms", "tenant_id": "acme",
     "settings": {"to": "+14155550100", "provider": "sns", "sms_type": "Transactional",
                  "sender_id": "GEOFLUX", "max_segments": 3}}
    {"name": "ana-sms", "kind": "sms", "tenant_id": "acme",
     "settings": {"to": "+14155550100", "provider": "twilio", "account_sid": "AC...",
                  "auth_token": "...", "from": "+14155550199"}}

One channel is one recipient: a delivery is then exactly one message, so a retry repeats
only what failed (a list of recipients would resend to those that already had it). An
escalation level lists one channel per person.

The text is `[SEVERITY] title` and the body, bounded to `max_segments` (default 3, at most 10)
and cut with an ellipsis (connectors/channels/sms_text.py).

Duplicates: neither path has an idempotency key. SNS Publish to a PhoneNumber takes no
deduplication id, and FIFO topics (which do) cannot deliver to SMS subscriptions, so there is
no FIFO route; Twilio's Messages API takes none either (connectors/channels/twilio.py). A retry
after a send whose answer was lost can reach the phone twice.
"""

from __future__ import annotations

import asyncio
import re

from connectors.channels.base import ChannelConfig, Notification
from connectors.channels.sms_text import compose, fit, max_segments_of, require_e164
from connectors.channels.sns import publish, sns_client
from connectors.channels.twilio import SERVICE_SID, TwilioRest, validate_account
from geoflux.errors import ValidationError

PROVIDERS = ("sns", "twilio")
SMS_TYPES = ("Transactional", "Promotional")
SENDER_ID = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9]{1,11}$")  # 1-11 alphanumerics, a letter


def text_of(n: Notification, settings: dict) -> str:
    return fit(compose(n.severity, n.title, n.body, n.action), max_segments_of(settings))


class SnsSms:
    """Publish with PhoneNumber; AWS.SNS.SMS.SMSType Transactional unless told otherwise (it
    is the type that is delivered for reliability, not cost)."""

    def __init__(self, config: ChannelConfig) -> None:
        self.name, self.s = config.name, config.settings
        self._client = sns_client(self.s)

    @staticmethod
    def validate(settings: dict) -> None:
        if settings.get("sms_type", "Transactional") not in SMS_TYPES:
            raise ValidationError("settings.sms_type must be Transactional or Promotional")
        sender = settings.get("sender_id")
        if sender is not None and (not isinstance(sender, str) or not SENDER_ID.match(sender)):
            raise ValidationError("settings.sender_id must be 1-11 letters or digits, at least one letter")
        if settings.get("origination_number") is not None:
            require_e164(settings["origination_number"], "settings.origination_number")

    def publish_args(self, n: Notification) -> dict:
        attrs = {"AWS.SNS.SMS.SMSType": self.s.get("sms_type", "Transactional")}
        if self.s.get("sender_id"):
            attrs["AWS.SNS.SMS.SenderID"] = self.s["sender_id"]
        if self.s.get("origination_number"):
            attrs["AWS.MM.SMS.OriginationNumber"] = self.s["origination_number"]
        return {"PhoneNumber": self.s["to"], "Message": text_of(n, self.s),
                "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}}

    async def send(self, n: Notification) -> str:
        return await asyncio.to_thread(publish, self._client, self.publish_args(n), f"sms {self.name}")

    async def close(self) -> None:
        pass


class TwilioSms(TwilioRest):
    """Messages API: To, Body, and From (a number or an alphanumeric sender id) or
    MessagingServiceSid."""

    kind = "sms"
    resource = "Messages"

    @classmethod
    def validate(cls, settings: dict) -> None:
        validate_account(settings)
        sender, service = settings.get("from"), settings.get("messaging_service_sid")
        if (sender is None) == (service is None):
            raise ValidationError("settings needs exactly one of from and messaging_service_sid")
        if service is not None and (not isinstance(service, str) or not SERVICE_SID.match(service)):
            raise ValidationError("settings.messaging_service_sid must be MG + 32 hex digits")
        if sender is not None and not (isinstance(sender, str) and SENDER_ID.match(sender)):
            require_e164(sender, "settings.from (or an alphanumeric sender id)")

    def form(self, n: Notification) -> dict[str, str]:
        sender = ({"MessagingServiceSid": self.s["messaging_service_sid"]}
                  if self.s.get("messaging_service_sid") else {"From": self.s["from"]})
        return {"To": self.s["to"], **sender, "Body": text_of(n, self.s)}


class SmsChannel:
    kind = "sms"

    def __init__(self, config: ChannelConfig) -> None:
        self.name = config.name
        provider = config.settings.get("provider", "sns")
        self._via = TwilioSms(config) if provider == "twilio" else SnsSms(config)

    @classmethod
    def validate(cls, settings: dict) -> None:
        provider = settings.get("provider", "sns")
        if provider not in PROVIDERS:
            raise ValidationError(f"settings.provider must be one of {', '.join(PROVIDERS)}")
        require_e164(settings.get("to"), "settings.to")
        max_segments_of(settings)
        (TwilioSms if provider == "twilio" else SnsSms).validate(settings)

    async def send(self, n: Notification) -> str:
        return await self._via.send(n)

    async def close(self) -> None:
        await self._via.close()
