"""A stand-in for Twilio's REST API (Messages and Calls) and for Twilio calling our keypress
webhook: a real HTTP server on 127.0.0.1 (a simulated Twilio, not a mock of our code).

It checks what Twilio checks on the wire: the path /2010-04-01/Accounts/{AccountSid}/...json,
HTTP basic auth AccountSid:AuthToken, a form-encoded body, E.164 `To`, a sender, a body of at
most 1600 characters; and, stricter than Twilio (which fails a bad document only when the call
runs), that `Twiml` parses as XML with a <Response> root. Errors come back as Twilio's JSON
(`code`, `message`, `more_info`, `status`). `script(resource, ...)` queues answers first (a 503, a 429).

`press(call, digits)` is Twilio's side of a keypress: it POSTs the Gather's action URL with
the parameters Twilio sends and `X-Twilio-Signature` computed here, independently of the code
under test, by Twilio's documented algorithm (checked against Twilio's published example in
tests/unit/test_channels_sms_voice.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from services.devstack.local_process import free_port
from tests.fakes import Answer

E164 = re.compile(r"^\+[1-9]\d{7,14}$")


def twilio_sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's webhook signature: the URL, then each parameter name and value in name order,
    HMAC-SHA1 with the auth token, base64."""
    data = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Request:
    resource: str  # Messages | Calls
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    status: int
    sid: str | None
    at: float


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)


class TwilioFake:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[Request] = []
        self._queues: dict[str, deque[Answer]] = {"Messages": deque(), "Calls": deque()}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("Twilio fake did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def _check(self, request: web.Request, form: dict[str, str]) -> tuple[str, web.Response | None]:
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/(Messages|Calls)\.json", request.path)
        if request.method != "POST" or m is None:
            return "", _error(404, 20404, f"The requested resource {request.path} was not found")
        resource = m.group(2)
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if auth != expected or m.group(1) != self.account_sid:
            return resource, _error(401, 20003, "Authenticate")
        if request.content_type != "application/x-www-form-urlencoded":
            return resource, _error(400, 20001, "the body must be application/x-www-form-urlencoded")
        if not E164.match(form.get("To", "")):
            return resource, _error(400, 21211, f"The 'To' number {form.get('To')} is not a valid phone number.")
        if resource == "Messages":
            if not form.get("From") and not form.get("MessagingServiceSid"):
                return resource, _error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
            if not form.get("Body"):
                return resource, _error(400, 21602, "Message body is required.")
            if len(form["Body"]) > 1600:
                return resource, _error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
            return resource, None
        if not E164.match(form.get("From", "")):
            return resource, _error(400, 21212, f"The 'From' number {form.get('From')} is not a valid phone number.")
        try:
            root = ET.fromstring(form.get("Twiml", ""))
        except ET.ParseError as exc:
            return resource, _error(400, 12100, f"Document parse failure: {exc}")
        if root.tag != "Response" or len(form["Twiml"]) > 4000:
            return resource, _error(400, 12100, "Twiml must be a <Response> of at most 4000 characters")
        return resource, None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        form = dict(urllib.parse.parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
        resource, failure = self._check(request, form)
        with self._lock:
            queue = self._queues.get(resource)
            scripted = queue.popleft() if queue else None
        sid = None
        if scripted is not None:
            response = web.Response(status=scripted.status, text=scripted.body, headers=scripted.headers,
                                    content_type="application/json")
        elif failure is not None:
            response = failure
        else:
            sid = ("SM" if resource == "Messages" else "CA") + uuid.uuid4().hex
            doc = {"sid": sid, "account_sid": self.account_sid, "to": form["To"],
                   "from": form.get("From"), "status": "queued", "api_version": "2010-04-01",
                   "uri": f"{request.path[:-5]}/{sid}.json"}
            if resource == "Messages":
                doc.update(body=form["Body"], messaging_service_sid=form.get("MessagingServiceSid"))
            response = web.json_response(doc, status=201)
        with self._lock:
            self.requests.append(Request(resource, request.path, dict(request.headers), form,
                                         response.status, sid, time.time()))
        return response

    def script(self, resource: str, *answers: Answer) -> None:
        """The next requests to `resource` (Messages or Calls) get these answers, in order."""
        with self._lock:
            self._queues[resource].extend(answers)

    def received(self, resource: str | None = None, ok_only: bool = True) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if (resource is None or r.resource == resource)
                    and (not ok_only or r.status < 300)]

    # -- Twilio calling us back ---------------------------------------------------------------
    @staticmethod
    def gather_action(call: Request) -> str:
        gather = ET.fromstring(call.form["Twiml"]).find("Gather")
        assert gather is not None, "the call's TwiML has no <Gather>"
        return gather.attrib["action"]

    def press(self, call: Request, digits: str, *, url: str | None = None, signed_url: str | None = None,
              token: str | None = None, signature: str | None = None,
              account_sid: str | None = None) -> tuple[int, str]:
        """POST the keypress as Twilio does; `url` (and the `signed_url` the signature covers),
        `token`, `signature` and `account_sid` forge it."""
        url = url or self.gather_action(call)
        params = {"AccountSid": account_sid or self.account_sid, "ApiVersion": "2010-04-01",
                  "CallSid": call.sid or "", "CallStatus": "in-progress", "Called": call.form["To"],
                  "Caller": call.form["From"], "Digits": digits, "Direction": "outbound-api",
                  "FinishedOnKey": "", "From": call.form["From"], "To": call.form["To"]}
        sig = signature if signature is not None else twilio_sign(token or self.auth_token,
                                                                  signed_url or url, params)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1",
                   "I-Twilio-Idempotency-Token": uuid.uuid4().hex}
        if sig:
            headers["X-Twilio-Signature"] = sig
        req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), method="POST",
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def close(self) -> None:
        async def shutdown():
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def error_body(code: int, message: str, status: int) -> str:
    return json.dumps({"code": code, "message": message, "status": status,
                       "more_info": f"https://www.twilio.com/docs/errors/{code}"})
