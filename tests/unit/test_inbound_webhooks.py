"""Acknowledgements from PagerDuty and Opsgenie, verified and parsed without a receiver: a
signature must match the raw body (any one of several while a secret rotates), a token must
match exactly, and every refusal says why."""

import hashlib
import hmac
import json

import pytest

from connectors.channels.inbound import parse_opsgenie, parse_pagerduty, verify_pagerduty, verify_token
from geoflux.errors import BadSignature, ValidationError

BODY = b'{"event": {"event_type": "incident.acknowledged"}}'


def sig(secret, body=BODY):
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def refusal(error, fn, *args) -> str:
    with pytest.raises(error) as e:
        fn(*args)
    return str(e.value)


def test_a_pagerduty_signature_must_match_the_body_any_of_several_while_rotating():
    verify_pagerduty("s3cret", BODY, sig("s3cret"))
    verify_pagerduty("s3cret", BODY, f"{sig('old')}, {sig('s3cret')}")
    verify_pagerduty("s3cret", BODY, f"{sig('old')},{sig('s3cret')}")  # as PagerDuty sends it: no space
    for header in (None, "", sig("other"), sig("s3cret", BODY + b" "), sig("s3cret")[3:], "v2=" + sig("s3cret")[3:]):
        assert refusal(BadSignature, verify_pagerduty, "s3cret", BODY, header) == \
            "X-PagerDuty-Signature does not match the body"
    assert refusal(BadSignature, verify_pagerduty, "", BODY, sig("")) == \
        "PagerDuty webhooks are not configured (GEOFLUX_ALERT_PAGERDUTY_WEBHOOK_SECRET)"


def test_a_token_must_match_exactly_and_be_configured():
    verify_token("tok", "tok", "Opsgenie")
    for offered in (None, "", "tok2", "to"):
        assert refusal(BadSignature, verify_token, "tok", offered, "Opsgenie") == "Opsgenie webhook token does not match"
    assert refusal(BadSignature, verify_token, "", "", "Opsgenie") == "Opsgenie webhooks are not configured"


def pd(event_type, **data):
    return json.dumps({"event": {"event_type": event_type, "agent": {"summary": "Ann"}, "data": data}}).encode()


def test_pagerduty_events_we_act_on_and_the_ones_we_do_not():
    assert parse_pagerduty(pd("incident.acknowledged", incident_key="a1")) == ("a1", "ACK", "pagerduty:Ann")
    assert parse_pagerduty(pd("incident.resolved", incident_key="a1")) == ("a1", "RESOLVE", "pagerduty:Ann")
    anonymous = json.dumps({"event": {"event_type": "incident.resolved", "data": {"incident_key": "a2"}}}).encode()
    assert parse_pagerduty(anonymous) == ("a2", "RESOLVE", "pagerduty:pagerduty")
    assert parse_pagerduty(pd("incident.triggered", incident_key="a1")) is None
    assert parse_pagerduty(b"{}") is None
    for body in (pd("incident.acknowledged"), pd("incident.acknowledged", incident_key="")):
        assert refusal(ValidationError, parse_pagerduty, body) == "event.data.incident_key (our dedup_key) is missing"


def test_opsgenie_actions_we_act_on_and_the_ones_we_do_not():
    def og(action, **alert):
        return json.dumps({"action": action, "alert": alert}).encode()
    assert parse_opsgenie(og("Acknowledge", alias="a1", username="bo")) == ("a1", "ACK", "opsgenie:bo")
    assert parse_opsgenie(og("Close", alias="a1")) == ("a1", "RESOLVE", "opsgenie:opsgenie")
    assert parse_opsgenie(og("AddNote", alias="a1")) is None
    assert refusal(ValidationError, parse_opsgenie, og("Close", alias=7)) == "alert.alias (our alert id) is missing"
    assert refusal(ValidationError, parse_opsgenie, json.dumps({"action": "Close"}).encode()) == \
        "alert.alias (our alert id) is missing"


def test_a_body_that_is_not_a_json_object_is_refused():
    assert refusal(ValidationError, parse_opsgenie, b"not json") == "webhook body is not JSON"
    assert refusal(ValidationError, parse_pagerduty, b"[1]") == "webhook body must be a JSON object"
