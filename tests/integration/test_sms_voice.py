"""SMS and voice channels against real receivers: SMS through moto's SNS in server mode (its
/moto-api/data.json lists the SMS it accepted), Twilio through tests/twilio_fake.py (a local
HTTP server checking Twilio's wire format); then end to end through Kafka: an escalation level
texts and calls, a signed keypress acknowledges the alert and its escalation stops, forged
keypresses are refused and change nothing."""

import asyncio
import base64
import json
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import pytest

from connectors.channels.base import ChannelConfig, Notification, RetryLater, build_channel, parse_channel
from connectors.channels.sms_text import segments
from connectors.channels.voice import ACK_PATH
from geoflux.errors import PermanentError, TransientError
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.fakes import Answer, FakeReceiver
from tests.integration.alert_helpers import AlertConfig, StatusView, geofence_event, publish_events, start_pipeline
from tests.integration.geo_helpers import TENANT_KEYS, http, start_api, stop
from tests.twilio_fake import TwilioFake, error_body, twilio_sign

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-auth-token-0001"
N = Notification(delivery_id="a1:ana-sms", alert_id="a1", tenant_id="acme", severity="critical",
                 title="truck-1 entered zone-7", body="at 12:00", created_ms=1_764_000_000_000)


@pytest.fixture
def twilio():
    fake = TwilioFake(SID, TOKEN)
    yield fake
    fake.close()


def send(config: dict, n: Notification = N):
    ch = build_channel(parse_channel({"name": config.pop("name", "ana-sms"), "tenant_id": "acme", **config}))

    async def go():
        try:
            return await ch.send(n)
        finally:
            await ch.close()
    return asyncio.run(go())


def moto_sms(endpoint: str, phone: str) -> list[str]:
    """The SMS moto's SNS accepted for `phone`, in order."""
    with urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=10) as resp:
        models = json.load(resp)
    return [m["message"] for m in models.get("sns", {}).get("SMS", []) if m["phone_number"] == phone]


def sns_settings(endpoint: str, to: str, **extra) -> dict:
    return {"kind": "sms", "settings": {"to": to, "endpoint_url": endpoint, "region": "us-east-1",
                                       "access_key_id": "test", "secret_access_key": "test", **extra}}


def twilio_settings(fake: TwilioFake, kind: str = "sms", **extra) -> dict:
    """A Twilio SMS or voice channel's settings; an `extra` of None removes that setting."""
    settings = {"to": "+14155550100", "provider": "twilio", "account_sid": SID, "auth_token": TOKEN,
                "from": "+14155550199", "base_url": fake.url}
    if kind == "voice":
        settings.pop("provider")
        settings["ack_base_url"] = "http://127.0.0.1:9"  # where Twilio would post the keypress
    settings.update(extra)
    return {"kind": kind, "settings": {k: v for k, v in settings.items() if v is not None}}


# -- SMS through SNS (moto server) ---------------------------------------------------------

def test_sns_sms_reaches_moto_with_its_attributes_on_the_wire(moto_endpoint):
    wire = []
    config = sns_settings(moto_endpoint, "+14155550101", sender_id="GEOFLUX")
    ch = build_channel(parse_channel({"name": "ana-sms", "tenant_id": "acme", **config}))
    ch._via._client.meta.events.register(
        "before-send.sns.Publish", lambda request, **_: wire.append(parse_qs(request.body)))

    async def go():
        try:
            return await ch.send(N)
        finally:
            await ch.close()
    message_id = asyncio.run(go())
    assert message_id and moto_sms(moto_endpoint, "+14155550101") == ["[CRITICAL] truck-1 entered zone-7\nat 12:00"]
    [form] = wire
    attrs = {form[f"MessageAttributes.entry.{i}.Name"][0]: form[f"MessageAttributes.entry.{i}.Value.StringValue"][0]
             for i in (1, 2)}
    assert attrs == {"AWS.SNS.SMS.SMSType": "Transactional", "AWS.SNS.SMS.SenderID": "GEOFLUX"}
    assert form["PhoneNumber"] == ["+14155550101"] and "TopicArn" not in form


def test_sns_sms_long_text_is_cut_to_max_segments(moto_endpoint):
    n = Notification("a2:x", "a2", "acme", "high", "Грузовик въехал в зону", "подробности " * 100)
    send(sns_settings(moto_endpoint, "+14155550102", max_segments=2), n)
    [text] = moto_sms(moto_endpoint, "+14155550102")
    assert segments(text) == 2 and text.endswith("…") and text.startswith("[HIGH] Грузовик")


def test_sns_sms_errors_are_classified(moto_endpoint):
    # a number our validation would refuse, sent anyway: SNS's own refusal is permanent
    bad = build_channel(ChannelConfig("x", "sms", "acme", sns_settings(moto_endpoint, "+1")["settings"]))
    with pytest.raises(PermanentError, match="InvalidParameter"):
        asyncio.run(bad.send(N))
    with pytest.raises(TransientError):  # nobody listening: the endpoint is down, try again later
        send(sns_settings(f"http://127.0.0.1:{free_port()}", "+14155550103"))
    assert moto_sms(moto_endpoint, "+1") == [] and moto_sms(moto_endpoint, "+14155550103") == []


# -- SMS and calls through Twilio (local fake) ---------------------------------------------

def test_twilio_sms_wire_format(twilio):
    receipt = send(twilio_settings(twilio))
    [req] = twilio.received("Messages")
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json" and receipt == req.sid
    assert req.form == {"To": "+14155550100", "From": "+14155550199",
                        "Body": "[CRITICAL] truck-1 entered zone-7\nat 12:00"}
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    send(twilio_settings(twilio, messaging_service_sid="MG" + "b" * 32, **{"from": None}))
    assert twilio.received("Messages")[1].form["MessagingServiceSid"] == "MG" + "b" * 32
    assert "From" not in twilio.received("Messages")[1].form


def test_twilio_answers_are_classified(twilio):
    twilio.script("Messages", Answer(503, error_body(20500, "Internal Server Error", 503)),
                  Answer(429, error_body(20429, "Too Many Requests", 429), {"Retry-After": "7"}))
    with pytest.raises(TransientError, match="20500"):
        send(twilio_settings(twilio))
    with pytest.raises(RetryLater, match="20429") as info:
        send(twilio_settings(twilio))
    assert info.value.retry_after_s == 7.0
    with pytest.raises(PermanentError, match="21211"):  # Twilio refuses the number: no retry
        bad = build_channel(ChannelConfig("x", "sms", "acme", twilio_settings(twilio, to="+1")["settings"]))
        asyncio.run(bad.send(N))
    with pytest.raises(PermanentError, match="20003"):  # wrong credentials
        send(twilio_settings(twilio, auth_token="wrong"))
    with pytest.raises(TransientError):
        send(twilio_settings(twilio, base_url=f"http://127.0.0.1:{free_port()}"))
    assert [r.status for r in twilio.requests] == [503, 429, 400, 401]


def test_twilio_call_carries_valid_twiml(twilio):
    receipt = send(twilio_settings(twilio, "voice") | {"name": "ana-phone"})
    [call] = twilio.received("Calls")
    assert receipt == call.sid and call.sid.startswith("CA") and set(call.form) == {"To", "From", "Twiml"}
    action = urlparse(TwilioFake.gather_action(call))
    assert action.path == ACK_PATH and parse_qs(action.query)["channel"] == ["ana-phone"]
    resolve = Notification("a1:ana-phone:resolve", "a1", "acme", "high", "t", "resolved by x", action="resolve")
    assert send(twilio_settings(twilio, "voice") | {"name": "ana-phone"}, resolve).startswith("no call")
    assert len(twilio.received("Calls")) == 1


# -- end to end through Kafka --------------------------------------------------------------

@pytest.mark.kafka
@pytest.mark.slow
def test_escalation_texts_and_calls_and_a_signed_keypress_acknowledges(kafka_settings, tmp_path,
                                                                       moto_endpoint, twilio):
    codec = AvroCodec()
    primary, level2 = FakeReceiver(), FakeReceiver()
    config = AlertConfig(kafka_settings, codec).start()
    statuses = StatusView(kafka_settings, codec)
    procs = {}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    try:
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        config.channels.put({"name": "primary", "kind": "webhook", "tenant_id": "acme",
                             "settings": {"url": primary.url + "/p", "secret": secret}})
        config.channels.put({"name": "level-2", "kind": "webhook", "tenant_id": "acme",
                             "settings": {"url": level2.url + "/l2", "secret": secret}})
        config.channels.put({"name": "ana-sms", "tenant_id": "acme", **twilio_settings(twilio)})
        config.channels.put({"name": "ana-sms-aws", "tenant_id": "acme",
                             **sns_settings(moto_endpoint, "+14155550110")})
        config.channels.put({"name": "ana-phone", "tenant_id": "acme",
                             **twilio_settings(twilio, "voice", ack_base_url=base)})
        # another tenant's voice channel: its owner knows its token and could sign with it
        config.channels.put({"name": "globex-phone", "tenant_id": "globex",
                             **twilio_settings(twilio, "voice", ack_base_url=base, auth_token="globex-token")})
        config.escalations.put({"policy_id": "oncall", "tenant_id": "acme", "severities": [], "levels": [
            {"delay_s": 2, "channels": ["ana-sms", "ana-sms-aws", "ana-phone"]},
            {"delay_s": 30, "channels": ["level-2"]}]})
        config.rules.put({"rule_id": "r1", "tenant_id": "acme", "severity": "high", "channels": ["primary"],
                          "match": {"event_type": "ENTER"}, "title": "{entity_id} entered {geofence_id}",
                          "escalation_policy": "oncall"})
        twilio.script("Calls", Answer(503, error_body(20500, "Internal Server Error", 503)))
        procs.update(start_pipeline(kafka_settings, tmp_path))
        procs["api"] = start_api(kafka_settings, port, tmp_path)
        wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
        publish_events(kafka_settings, codec, [geofence_event(1, entity="v-ack"), geofence_event(2, entity="v-esc")])
        wait_for(lambda: statuses.by_status().get("SENT", 0) == 2, 60, what="both alerts SENT")
        ids = {st["title"].split()[0]: aid for aid, st in statuses.snapshot().items()}
        acked, escalating = ids["v-ack"], ids["v-esc"]

        def call_of(alert_id):
            return next((c for c in twilio.received("Calls")
                         if parse_qs(urlparse(TwilioFake.gather_action(c)).query)["alert_id"] == [alert_id]), None)

        wait_for(lambda: call_of(acked) and call_of(escalating), 60, what="both alerts' calls")
        wait_for(lambda: len(twilio.received("Messages")) == 2, 30, what="both Twilio SMS")
        wait_for(lambda: len(moto_sms(moto_endpoint, "+14155550110")) == 2, 30, what="both SNS SMS")
        texts = sorted(moto_sms(moto_endpoint, "+14155550110"))
        assert [t.split("\n")[0] for t in texts] == ["[HIGH] v-ack entered zone-7", "[HIGH] v-esc entered zone-7"]
        # the first call attempt met a 503 and was retried with the same delivery id
        failed = [r for r in twilio.requests if r.resource == "Calls" and r.status == 503]
        assert len(failed) == 1
        retried = next(c for c in twilio.received("Calls") if c.form == failed[0].form)
        query = parse_qs(urlparse(TwilioFake.gather_action(retried)).query)
        assert query["delivery_id"] == [f"{query['alert_id'][0]}:ana-phone:esc1"]
        assert len(twilio.received("Calls")) == 2  # one successful call per alert

        # forged keypresses on the escalating alert's call: all refused, none acknowledges
        call = call_of(escalating)
        action = TwilioFake.gather_action(call)
        assert twilio.press(call, "1", signature="")[0] == 403                      # unsigned
        assert twilio.press(call, "1", token="guessed-token")[0] == 403             # wrong token
        assert twilio.press(call, "1", signature=twilio_sign(TOKEN, action, {"Digits": "1"}))[0] == 403
        assert twilio.press(call, "1", url=action.replace(escalating, acked, 1), signed_url=action)[0] == 403
        assert twilio.press(call, "1", account_sid="AC" + "f" * 32)[0] == 403       # another account
        foreign = f"{base}{ACK_PATH}?" + urllib.parse.urlencode(
            {"alert_id": escalating, "channel": "globex-phone", "delivery_id": "x"})
        assert twilio.press(call, "1", url=foreign, token="globex-token")[0] == 404  # not globex's alert
        status, doc = twilio.press(call, "2")                                        # signed, wrong key
        assert status == 200 and ET.fromstring(doc).find("Gather") is not None      # asked again
        garbage = urllib.request.Request(action, data=b"\x00\xff" * 64, method="POST",
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(garbage, timeout=10)
        assert refused.value.code == 403

        # the person on the other call presses 1: acknowledged, escalation stops
        status, doc = twilio.press(call_of(acked), "1")
        assert status == 200 and "acknowledged" in ET.fromstring(doc).find("Say").text
        assert twilio.press(call_of(acked), "1")[0] == 200  # Twilio retrying the webhook: harmless
        wait_for(lambda: statuses.snapshot()[acked]["status"] == "ACKNOWLEDGED", 30, what="keypress ACK applied")
        assert statuses.snapshot()[acked]["acknowledged_by"] == "voice:+14155550100"
        assert statuses.snapshot()[acked]["next_escalation_ms"] is None

        # the other alert, never acknowledged by the forgeries, reaches level 2; the acked one never does
        wait_for(lambda: level2.received(), 90, what="level 2 of the unacknowledged alert")
        wait_for(lambda: statuses.snapshot()[escalating]["escalation_level"] == 2, 30, what="level 2 recorded")
        assert [r.json()["data"]["alert_id"] for r in level2.received()] == [escalating]
        assert statuses.snapshot()[escalating]["status"] != "ACKNOWLEDGED"
        st = statuses.snapshot()[acked]
        assert st["escalation_level"] == 1 and st["channels"].get("level-2") is None
        assert {k: v for k, v in st["channels"].items()} == {
            "primary": "SENT", "ana-sms": "SENT", "ana-sms-aws": "SENT", "ana-phone": "SENT"}

        # the API validates the new kinds with reasons
        bad = http("POST", f"{base}/api/v1/alerts/channels", {"name": "x", "kind": "sms", "tenant_id": "acme",
                                                               "settings": {"to": "0049 151 1234"}},
                   key=TENANT_KEYS["acme"])
        assert bad[0] == 422 and "E.164" in json.dumps(bad[1])
        no_url = http("POST", f"{base}/api/v1/alerts/channels",
                      {"name": "y", "tenant_id": "acme", **twilio_settings(twilio, "voice", ack_base_url=None)},
                      key=TENANT_KEYS["acme"])
        assert no_url[0] == 422 and "ack_base_url" in json.dumps(no_url[1])
    finally:
        for p in procs.values():
            stop(p)
        statuses.close()
        config.close()
        primary.close()
        level2.close()
