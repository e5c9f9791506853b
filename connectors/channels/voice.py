"""Phone calls through Twilio's Calls API that read the alert and take a keypress as its
acknowledgement.

    {"name": "ana-phone", "kind": "voice", "tenant_id": "acme",
     "settings": {"to": "+14155550100", "from": "+14155550199", "account_sid": "AC...",
                  "auth_token": "...", "ack_base_url": "https://geoflux.example.com"}}

The call carries its TwiML inline (`Twiml`): a <Gather numDigits="1"> around a <Say> of the
alert, whose `action` is our webhook
`{ack_base_url}/api/v1/webhooks/twilio/voice?alert_id=...&channel=...&delivery_id=...`. Pressing
1 acknowledges the alert (services/api/routes_twilio.py verifies Twilio's signature with this
channel's auth token first); no key, or another key, changes nothing. `ack_base_url` is the
API's public URL as Twilio reaches it (behind a proxy: the proxy's); without it the channel
uses GEOFLUX_API_PUBLIC_URL.

A resolution places no call unless `call_on_resolve` is true: ringing someone to say there is
nothing to do is worse than silence. Retries may ring twice (no idempotency key on Calls:
connectors/channels/twilio.py).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

from connectors.channels.base import Notification
from connectors.channels.http import _require_url
from connectors.channels.sms_text import require_e164
from connectors.channels.twilio import TwilioRest, validate_account
from geoflux.errors import PermanentError, ValidationError
from geoflux.settings import ApiSettings

ACK_PATH = "/api/v1/webhooks/twilio/voice"
ACK_DIGIT = "1"
MAX_TWIML = 4000  # Twilio's limit for the Twiml parameter, in characters
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _say(parent: ET.Element, text: str, settings: dict) -> None:
    attrs = {k: settings[k] for k in ("voice", "language") if settings.get(k)}
    # ElementTree escapes markup but writes control characters as they are: not XML, and Twilio
    # would drop the call
    ET.SubElement(parent, "Say", attrs).text = _NOT_XML.sub(" ", text)


def twiml(text: str, ack_url: str, settings: dict) -> str:
    """The call's TwiML; the spoken alert is shortened until the document fits Twilio's limit."""
    gather_attrs = {"numDigits": "1", "action": ack_url, "method": "POST",
                    "timeout": str(settings.get("gather_timeout_s", 10))}
    while True:
        response = ET.Element("Response")
        gather = ET.SubElement(response, "Gather", gather_attrs)
        _say(gather, text, settings)
        _say(gather, f"Press {ACK_DIGIT} to acknowledge this alert.", settings)
        _say(response, "No key was pressed. The alert is not acknowledged. Goodbye.", settings)
        doc = ET.tostring(response, encoding="unicode")
        if len(doc) <= MAX_TWIML:
            return doc
        if len(text) <= 3:
            raise ValidationError(f"the call's TwiML is over {MAX_TWIML} characters without the alert text")
        text = text[:max(0, len(text) - (len(doc) - MAX_TWIML) - 3)].rstrip() + "..."


def answer(said: str, settings: dict | None = None) -> str:
    """TwiML for our webhook's answer: a sentence, then hang up."""
    response = ET.Element("Response")
    _say(response, said[:MAX_TWIML // 2], settings or {})
    ET.SubElement(response, "Hangup")
    return ET.tostring(response, encoding="unicode")


def ack_base_url(settings: dict) -> str | None:
    return settings.get("ack_base_url") or ApiSettings().public_url


class VoiceChannel(TwilioRest):
    kind = "voice"
    resource = "Calls"

    @classmethod
    def validate(cls, settings: dict) -> None:
        if settings.get("provider", "twilio") != "twilio":
            raise ValidationError("settings.provider must be twilio (the only voice provider)")
        validate_account(settings)
        require_e164(settings.get("to"), "settings.to")
        require_e164(settings.get("from"), "settings.from")
        if settings.get("ack_base_url") is not None:
            _require_url(settings, "ack_base_url")
        elif not ApiSettings().public_url:
            raise ValidationError("settings.ack_base_url is required (the API's public URL, where "
                                  "Twilio posts the keypress) unless GEOFLUX_API_PUBLIC_URL is set")
        timeout = settings.get("gather_timeout_s", 10)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 60:
            raise ValidationError("settings.gather_timeout_s must be an integer from 1 to 60")
        if not isinstance(settings.get("call_on_resolve", False), bool):
            raise ValidationError("settings.call_on_resolve must be true or false")

    def ack_url(self, n: Notification) -> str:
        base = ack_base_url(self.s)
        if not base:
            raise PermanentError(f"voice {self.name}: no acknowledgement URL (settings.ack_base_url "
                                 f"or GEOFLUX_API_PUBLIC_URL)")
        query = urlencode({"alert_id": n.alert_id, "channel": self.name, "delivery_id": n.delivery_id})
        return f"{base.rstrip('/')}{ACK_PATH}?{query}"

    @staticmethod
    def spoken(n: Notification) -> str:
        if n.action == "resolve":
            return f"Geoflux: the alert {n.title} is resolved. {n.body}"
        return f"Geoflux alert, severity {n.severity}. {n.title}. {n.body}"

    def form(self, n: Notification) -> dict[str, str]:
        doc = (answer(self.spoken(n), self.s) if n.action == "resolve"
               else twiml(self.spoken(n), self.ack_url(n), self.s))
        return {"To": self.s["to"], "From": self.s["from"], "Twiml": doc}

    async def send(self, n: Notification) -> str:
        if n.action == "resolve" and not self.s.get("call_on_resolve", False):
            return "no call: resolutions are not called (call_on_resolve is false)"
        return await super().send(n)
