"""Every channel against a real local receiver: exact wire format, headers, signature, and how
each answer is classified."""

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json

import boto3
import pytest
from aiosmtpd.controller import Controller

from connectors.channels.base import EndpointGone, Notification, RetryLater, build_channel, parse_channel
from geoflux.errors import PermanentError, TransientError, ValidationError
from services.devstack.local_process import free_port
from tests.fakes import Answer, FakeReceiver

N = Notification(delivery_id="a1:ops", alert_id="a1", tenant_id="acme", severity="critical",
                 title="truck-1 entered zone-7", body="at 12:00", labels={"geofence_id": "zone-7"},
                 created_ms=1_764_000_000_000)


@pytest.fixture
def receiver():
    r = FakeReceiver()
    yield r
    r.close()


def channel(kind, **settings):
    return build_channel(parse_channel({"name": "ops", "kind": kind, "tenant_id": "acme",
                                        "settings": settings}))


def send(ch, n=N):
    async def go():
        try:
            return await ch.send(n)
        finally:
            await ch.close()
    return asyncio.run(go())


def test_webhook_standard_webhooks_signature(receiver):
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()
    send(channel("webhook", url=receiver.url + "/hook", secret=secret))
    [req] = receiver.received()
    h = {k.lower(): v for k, v in req.headers.items()}
    assert h["webhook-id"] == "a1:ops"
    signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + req.body
    expected = base64.b64encode(hmac.new(b"0123456789abcdef", signed, hashlib.sha256).digest()).decode()
    assert h["webhook-signature"] == f"v1,{expected}"
    assert req.json()["data"]["alert_id"] == "a1" and req.json()["type"] == "alert.trigger"


def test_slack_success_only_on_200_ok(receiver):
    ch = channel("slack", url=receiver.url + "/services/T/B/X")
    assert send(ch) == "200"
    body = receiver.received()[0].json()
    assert body["text"] == "[CRITICAL] truck-1 entered zone-7" and body["blocks"][0]["type"] == "section"
    receiver.script(Answer(200, "invalid_token"))
    with pytest.raises(PermanentError, match="invalid_token"):
        send(channel("slack", url=receiver.url + "/x"))


def test_teams_adaptive_card_and_202(receiver):
    receiver.script(Answer(202, ""))
    send(channel("teams", url=receiver.url + "/workflows/run"))
    body = receiver.received()[0].json()
    att = body["attachments"][0]
    assert att["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert att["content"]["type"] == "AdaptiveCard" and att["content"]["version"] == "1.4"


def test_pagerduty_events_v2_trigger_and_resolve(receiver):
    receiver.script(Answer(202, '{"status":"success"}'), Answer(202, '{"status":"success"}'))
    ch = channel("pagerduty", url=receiver.url + "/v2/enqueue", routing_key="R" * 32)
    send(ch)
    send(channel("pagerduty", url=receiver.url + "/v2/enqueue", routing_key="R" * 32),
         dataclasses.replace(N, action="resolve"))
    trig, res = [r.json() for r in receiver.received()]
    assert trig["event_action"] == "trigger" and trig["dedup_key"] == "a1"
    assert trig["payload"]["severity"] == "critical" and trig["payload"]["summary"] == N.title
    assert res == {"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": "a1"}
    receiver.script(Answer(200, "ok"))  # PagerDuty success is 202 only
    with pytest.raises(PermanentError):
        send(channel("pagerduty", url=receiver.url + "/v2/enqueue", routing_key="R"))


def test_opsgenie_alias_and_geniekey(receiver):
    receiver.script(Answer(202, '{"result":"Request will be processed"}'))
    send(channel("opsgenie", url=receiver.url, api_key="k-123"))
    [req] = receiver.received()
    assert req.path == "/v2/alerts" and req.headers["Authorization"] == "GenieKey k-123"
    assert req.json()["alias"] == "a1" and req.json()["priority"] == "P1"


@pytest.mark.parametrize("schema", ["eventgrid", "cloudevents"])
def test_event_grid_both_schemas(receiver, schema):
    send(channel("eventgrid", url=receiver.url + "/api/events", sas_key="sas", schema=schema))
    [req] = receiver.received()
    assert req.headers["aeg-sas-key"] == "sas"
    [event] = req.json()
    if schema == "cloudevents":
        assert event["specversion"] == "1.0" and event["id"] == "a1:ops"
        assert req.headers["Content-Type"].startswith("application/cloudevents-batch+json")
    else:
        assert event["eventType"] == "Geoflux.Alert.Trigger" and event["dataVersion"] == "1.0"


@pytest.mark.parametrize("answer,error,check", [
    (Answer(503, "down"), TransientError, None),
    (Answer(408, "slow"), TransientError, None),
    (Answer(429, "slow down", {"Retry-After": "7"}), RetryLater, lambda e: e.retry_after_s == 7),
    (Answer(410, "gone"), EndpointGone, None),
    (Answer(400, "bad"), PermanentError, None),
    (Answer(200, "ok", hang_s=3), TransientError, None),
])
def test_answers_are_classified(receiver, answer, error, check):
    receiver.script(answer)
    with pytest.raises(error) as info:
        send(channel("webhook", url=receiver.url, secret="s", timeout_s=1))
    assert check is None or check(info.value)
    if error is EndpointGone:
        assert not isinstance(info.value, TransientError)


def test_connection_refused_is_transient():
    with pytest.raises(TransientError):
        send(channel("slack", url=f"http://127.0.0.1:{free_port()}/x"))


def test_bad_channel_config_is_rejected():
    with pytest.raises(ValidationError, match="kind must be one of"):
        parse_channel({"name": "x", "kind": "fax", "tenant_id": "t"})
    with pytest.raises(ValidationError, match="settings.url"):
        parse_channel({"name": "x", "kind": "slack", "tenant_id": "t", "settings": {"url": "ftp://x"}})
    with pytest.raises(ValidationError, match="routing_key"):
        parse_channel({"name": "x", "kind": "pagerduty", "tenant_id": "t", "settings": {}})


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


def test_email_over_smtp():
    inbox, port = Inbox(), free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        send(channel("email", host="127.0.0.1", port=port, **{"from": "geoflux@example.org"},
                     to=["ops@example.org"]))
    finally:
        ctl.stop()
    [env] = inbox.messages
    text = env.content.decode()
    assert env.rcpt_tos == ["ops@example.org"]
    assert "Subject: [CRITICAL] truck-1 entered zone-7" in text and "Message-ID: <a1.ops@geoflux>" in text
    assert "X-Geoflux-Delivery-Id: a1:ops" in text


def test_email_server_down_is_transient():
    with pytest.raises(TransientError):
        send(channel("email", host="127.0.0.1", port=free_port(), **{"from": "a@b.c"}, to=["x@y.z"]))


def test_sns_standard_and_fifo_against_moto(moto_endpoint, receiver):
    creds = dict(endpoint_url=moto_endpoint, region="us-east-1", access_key_id="test",
                 secret_access_key="test")
    client = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    std = client.create_topic(Name="alerts")["TopicArn"]
    client.subscribe(TopicArn=std, Protocol="http", Endpoint=receiver.url + "/sns")
    fifo = client.create_topic(Name="alerts.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    assert send(channel("sns", topic_arn=std, **creds))
    args = build_channel(parse_channel({"name": "f", "kind": "sns", "tenant_id": "acme",
                                        "settings": {"topic_arn": fifo, **creds}})).publish_args(N)
    assert args["MessageGroupId"] == "acme" and args["MessageDeduplicationId"] == "a1:ops"
    assert send(channel("sns", topic_arn=fifo, **creds))
    # moto delivers the standard topic's notification to the HTTP subscriber, as SNS would
    notes = [r.json() for r in receiver.received() if r.json().get("Type") == "Notification"]
    assert json.loads(notes[0]["Message"])["delivery_id"] == "a1:ops"
    with pytest.raises(PermanentError):
        send(channel("sns", topic_arn="arn:aws:sns:us-east-1:123456789012:missing", **creds))
