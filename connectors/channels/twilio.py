"""Twilio's REST API (Messages and Calls) and the signature Twilio puts on its webhooks.

Requests: POST {base_url}/2010-04-01/Accounts/{AccountSid}/{Messages|Calls}.json, form-encoded,
HTTP basic auth AccountSid:AuthToken; success is 201 with the resource's JSON (`sid`). Errors
carry Twilio's JSON `{"code": 21211, "message": ..., "status": 400}`: 429 (code 20429) is
transient and honours Retry-After, 5xx and 408 are transient, other 4xx are permanent (21211
invalid 'To', 21610 the recipient replied STOP, 20003 bad credentials, ...), with Twilio's code
and message in the reason.

Idempotency: Twilio's Messages and Calls APIs take no idempotency key (only Payments has one;
`I-Twilio-Idempotency-Token` is a header Twilio sends *to* webhooks). A retry after a request
Twilio accepted but whose answer was lost (timeout, connection reset) sends a second SMS or
places a second call. At-least-once: a person may get a duplicate, never nothing.

Webhook signature (Twilio's documented scheme, as twilio-python's RequestValidator computes it):
`X-Twilio-Signature = base64(HMAC-SHA1(auth_token, URL + k1 + v1 + k2 + v2 ...))` over the full
URL Twilio requested (with its query string) and the POST parameters sorted by name (a name
with several values: each value, sorted). Twilio signs the URL sometimes with and sometimes
without the default port, so both forms are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from urllib.parse import urlencode, urlparse

from connectors.channels.base import Notification
from connectors.channels.http import HttpChannel, _require_url
from geoflux.errors import ValidationError

API_BASE = "https://api.twilio.com"
ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")


def validate_account(settings: dict) -> None:
    settings.setdefault("base_url", API_BASE)
    _require_url(settings, "base_url")
    if not isinstance(settings.get("account_sid"), str) or not ACCOUNT_SID.match(settings["account_sid"]):
        raise ValidationError("settings.account_sid must be a Twilio Account SID (AC + 32 hex digits)")
    if not isinstance(settings.get("auth_token"), str) or not settings["auth_token"]:
        raise ValidationError("settings.auth_token is required")


class TwilioRest(HttpChannel):
    """One Twilio resource creation per notification; `resource` is Messages or Calls."""

    resource = ""
    ok_statuses = (200, 201)

    def form(self, n: Notification) -> dict[str, str]:
        raise NotImplementedError

    def request(self, n: Notification) -> tuple[str, bytes, dict[str, str]]:
        sid = self.s["account_sid"]
        url = f"{self.s.get('base_url', API_BASE).rstrip('/')}/2010-04-01/Accounts/{sid}/{self.resource}.json"
        auth = base64.b64encode(f"{sid}:{self.s['auth_token']}".encode()).decode()
        return url, urlencode(self.form(n)).encode(), {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
            "Authorization": f"Basic {auth}"}

    def receipt(self, status: int, body: str) -> str:
        try:
            return json.loads(body).get("sid") or str(status)
        except (ValueError, AttributeError):
            return str(status)

    def describe_error(self, status: int, body: str) -> str:
        try:
            doc = json.loads(body)
            return f"Twilio error {doc.get('code')}: {doc.get('message')}"
        except (ValueError, AttributeError):
            return body


# -- the webhook signature --------------------------------------------------------------------

def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    values: dict[str, set[str]] = {}
    for k, v in params:
        values.setdefault(k, set()).add(v)
    data = url + "".join(k + v for k in sorted(values) for v in sorted(values[k]))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _url_forms(url: str) -> list[str]:
    """The URL as given, without any port, and with its port (the scheme's default if none)."""
    parsed = urlparse(url)
    userinfo, _, hostport = parsed.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    host = hostport.rsplit(":", 1)[0] if parsed.port else hostport
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return list(dict.fromkeys([url, parsed._replace(netloc=f"{prefix}{host}").geturl(),
                               parsed._replace(netloc=f"{prefix}{host}:{port}").geturl()]))


def valid_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]],
                    offered: str | None) -> bool:
    if not auth_token or not offered:
        return False
    params = list(params)
    return any(hmac.compare_digest(signature(auth_token, form, params).encode(), offered.encode())
               for form in _url_forms(url))
