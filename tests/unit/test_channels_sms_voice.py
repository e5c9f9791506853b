"""SMS and voice channels without I/O: phone numbers, GSM-7 / UCS-2 segments and truncation,
channel validation (the API's 422 reasons), the wire payloads, TwiML, and Twilio's webhook
signature against Twilio's own published vectors."""

import dataclasses
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import pytest

from connectors.channels.base import ChannelConfig, Notification, build_channel, channel_kinds, parse_channel
from connectors.channels.sms_text import GSM_BASIC, GSM_EXTENSION, compose, encoding, fit, require_e164, segments
from connectors.channels.twilio import signature, valid_signature
from connectors.channels.voice import MAX_TWIML, twiml
from geoflux.errors import ValidationError
from tests.twilio_fake import twilio_sign

SID = "AC" + "0123456789abcdef" * 2
N = Notification(delivery_id="a1:ana-phone:esc1", alert_id="a1", tenant_id="acme", severity="high",
                 title="truck-1 entered zone-7", body="at 12:00", created_ms=1_764_000_000_000)


@pytest.fixture(autouse=True)
def no_public_url(monkeypatch):
    monkeypatch.delenv("GEOFLUX_API_PUBLIC_URL", raising=False)


def sms(**settings):
    return parse_channel({"name": "ana-sms", "kind": "sms", "tenant_id": "acme", "settings": settings})


def voice(**settings):
    base = {"to": "+14155550100", "from": "+14155550199", "account_sid": SID, "auth_token": "tok",
            "ack_base_url": "https://geoflux.example.com"}
    return parse_channel({"name": "ana-phone", "kind": "voice", "tenant_id": "acme",
                          "settings": {**base, **settings}})


# -- phone numbers and segments ------------------------------------------------------------

@pytest.mark.parametrize("number", ["+12345678", "+14155550100", "+491511234567", "+123456789012345"])
def test_e164_accepts_8_to_15_digits(number):
    assert require_e164(number, "to") == number


@pytest.mark.parametrize("number", ["+1234567", "+1234567890123456", "14155550100", "+04155550100",
                                    "+1 415 555 0100", "+1415555010a", "", None, 14155550100, "+"])
def test_e164_refuses_everything_else(number):
    with pytest.raises(ValidationError, match="E.164"):
        require_e164(number, "settings.to")


def test_gsm_alphabet_is_the_03_38_tables():
    assert len(GSM_BASIC) == 127 and len(GSM_EXTENSION) == 10  # 128 codes less the escape
    assert not GSM_BASIC & GSM_EXTENSION


@pytest.mark.parametrize("text,expected", [
    ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),      # GSM-7: 160, then 153 each
    ("€" * 80, 1), ("€" * 81, 2), ("a" * 159 + "€", 2),                  # extension: two septets
    ("a" * 152 + "€" + "a" * 152, 3),                                     # an escape pair is not split
    ("ж" * 70, 1), ("ж" * 71, 2), ("ж" * 134, 2), ("ж" * 135, 3),        # UCS-2: 70, then 67 each
    ("😀" * 35, 1), ("😀" * 36, 2), ("a" * 66 + "😀" + "a" * 66, 3),      # surrogate pairs: 2 units
    ("a" * 159 + "ж", 3), ("", 1)])                                       # one Cyrillic letter: UCS-2
def test_segments(text, expected):
    assert segments(text) == expected


def test_one_character_outside_gsm_makes_the_whole_message_ucs2():
    assert encoding("Zone 7: truck entered") == "GSM-7"
    assert encoding("Zone 7 → truck entered") == "UCS-2"


@pytest.mark.parametrize("max_segments", [1, 2, 3, 10])
def test_fit_cuts_at_the_limit_with_an_ellipsis(max_segments):
    long = "Truck 17 entered the school zone during school hours. " * 60
    cut = fit(long, max_segments)
    assert segments(cut) == max_segments and cut.endswith("...") and encoding(cut) == "GSM-7"
    assert long.startswith(cut[:-3])
    room = 160 if max_segments == 1 else 153 * max_segments
    assert len(cut) >= room - 1  # all the room is used (less a space dropped before the ellipsis)


def test_fit_in_ucs2_uses_the_unicode_ellipsis_and_never_splits_an_emoji():
    cut = fit("🚚 Грузовик въехал в школьную зону 😀" * 20, 2)
    assert segments(cut) == 2 and cut.endswith("…")
    assert all(not 0xD800 <= ord(c) <= 0xDFFF for c in cut)


def test_fit_leaves_a_short_text_alone_and_makes_typography_plain():
    assert fit("[HIGH] truck-1 entered zone-7\nat 12:00", 1) == "[HIGH] truck-1 entered zone-7\nat 12:00"
    plain = fit("“Zone 7” – truck’s entry…", 1)
    assert plain == '"Zone 7" - truck\'s entry...' and encoding(plain) == "GSM-7"


def test_a_cut_before_the_only_non_gsm_character_travels_as_gsm():
    text = "a" * 500 + " → end"
    cut = fit(text, 1)
    assert cut == "a" * 157 + "..." and encoding(cut) == "GSM-7"


def test_compose_puts_severity_and_title_first():
    assert compose("critical", "t", "b") == "[CRITICAL] t\nb"
    assert compose("critical", "t", "resolved by x", "resolve") == "[RESOLVED] t\nresolved by x"
    assert compose("low", "t", "") == "[LOW] t"  # no body, no trailing line


def test_only_characters_past_the_basic_plane_take_two_ucs2_units():
    # U+FFFF is the last character of one unit, U+10000 the first of a surrogate pair
    assert segments("\uffff" * 70) == 1 and segments("\uffff" * 71) == 2
    assert segments("\U00010000" * 35) == 1 and segments("\U00010000" * 36) == 2


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_fit_keeps_the_longest_prefix_that_fits(max_segments):
    """One character more than `fit` kept would not fit: the cut is not merely short enough."""
    for n in range(150, 620, 37):
        text = "b" * n
        cut = fit(text, max_segments)
        kept = len(cut) - 3 if cut.endswith("...") else len(cut)
        assert segments(cut) <= max_segments
        if kept < n:
            assert segments(text[:kept + 1] + "...") > max_segments


def test_a_cut_drops_the_space_before_the_ellipsis_and_keeps_the_leading_one():
    # the longest prefix that fits one segment ends on the space before the y's
    assert fit(" " + "x" * 155 + " " + "y" * 100, 1) == " " + "x" * 155 + "..."


# -- validation: what the API answers 422 with ---------------------------------------------

def test_kinds_are_registered_and_secrets_masked():
    assert {"sms", "voice"} <= set(channel_kinds())
    public = sms(to="+14155550100", provider="twilio", account_sid=SID, auth_token="secret-token",
                 **{"from": "+14155550199"}).public()["settings"]
    assert public["auth_token"] == "***" and public["account_sid"] == SID
    public = sms(to="+14155550100", access_key_id="AKIA", secret_access_key="s").public()["settings"]
    assert public["access_key_id"] == "***" and public["secret_access_key"] == "***"


@pytest.mark.parametrize("settings,reason", [
    ({"to": "+1415"}, "settings.to must be an E.164"),
    ({}, "settings.to must be an E.164"),
    ({"to": "+14155550100", "provider": "nexmo"}, "provider must be one of sns, twilio"),
    ({"to": "+14155550100", "max_segments": 0}, "max_segments must be an integer from 1 to 10"),
    ({"to": "+14155550100", "max_segments": 11}, "max_segments"),
    ({"to": "+14155550100", "max_segments": True}, "max_segments"),
    ({"to": "+14155550100", "sms_type": "Urgent"}, "Transactional or Promotional"),
    ({"to": "+14155550100", "sender_id": "GEOFLUX-ALERTS"}, "sender_id must be 1-11"),
    ({"to": "+14155550100", "sender_id": "12345"}, "at least one letter"),
    ({"to": "+14155550100", "origination_number": "555"}, "origination_number must be an E.164"),
    ({"to": "+14155550100", "provider": "twilio", "auth_token": "t", "from": "+14155550199"}, "account_sid"),
    ({"to": "+14155550100", "provider": "twilio", "account_sid": "AC123", "auth_token": "t",
      "from": "+14155550199"}, "AC \\+ 32 hex"),
    ({"to": "+14155550100", "provider": "twilio", "account_sid": SID, "from": "+14155550199"}, "auth_token is required"),
    ({"to": "+14155550100", "provider": "twilio", "account_sid": SID, "auth_token": "t"}, "exactly one of from"),
    ({"to": "+14155550100", "provider": "twilio", "account_sid": SID, "auth_token": "t", "from": "+14155550199",
      "messaging_service_sid": "MG" + "0" * 32}, "exactly one of from"),
    ({"to": "+14155550100", "provider": "twilio", "account_sid": SID, "auth_token": "t", "from": "555"}, "settings.from"),
    ({"to": "+14155550100", "provider": "twilio", "account_sid": SID, "auth_token": "t", "from": "+14155550199",
      "base_url": "ftp://x"}, "base_url must be an http"),
])
def test_sms_validation_reasons(settings, reason):
    with pytest.raises(ValidationError, match=reason):
        sms(**settings)


def test_sms_valid_configurations():
    sms(to="+14155550100")
    sms(to="+14155550100", sender_id="GEOFLUX", sms_type="Promotional", max_segments=10)
    sms(to="+14155550100", provider="twilio", account_sid=SID, auth_token="t", **{"from": "GEOFLUX"})
    sms(to="+14155550100", provider="twilio", account_sid=SID, auth_token="t", messaging_service_sid="MG" + "a" * 32)


@pytest.mark.parametrize("settings,reason", [
    ({"to": "+1"}, "settings.to must be an E.164"),
    ({"from": None}, "settings.from must be an E.164"),
    ({"provider": "sns"}, "only voice provider"),
    ({"auth_token": ""}, "auth_token is required"),
    ({"ack_base_url": "geoflux.example.com"}, "ack_base_url must be an http"),
    ({"ack_base_url": None}, "ack_base_url is required"),
    ({"gather_timeout_s": 0}, "gather_timeout_s"),
    ({"call_on_resolve": "yes"}, "call_on_resolve"),
])
def test_voice_validation_reasons(settings, reason):
    with pytest.raises(ValidationError, match=reason):
        voice(**settings)


def test_voice_takes_the_public_url_setting_when_the_channel_has_none(monkeypatch):
    monkeypatch.setenv("GEOFLUX_API_PUBLIC_URL", "https://proxy.example.com/geoflux")
    ch = build_channel(voice(ack_base_url=None))
    assert ch.ack_url(N).startswith("https://proxy.example.com/geoflux/api/v1/webhooks/twilio/voice?")


# -- wire payloads -------------------------------------------------------------------------

def test_sns_sms_publish_arguments():
    ch = build_channel(sms(to="+14155550100", sender_id="GEOFLUX", origination_number="+18005550100"))
    args = ch._via.publish_args(N)
    assert args["PhoneNumber"] == "+14155550100" and args["Message"] == "[HIGH] truck-1 entered zone-7\nat 12:00"
    assert args["MessageAttributes"] == {
        "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "GEOFLUX"},
        "AWS.MM.SMS.OriginationNumber": {"DataType": "String", "StringValue": "+18005550100"}}
    assert "TopicArn" not in args and "MessageDeduplicationId" not in args


def test_twilio_sms_request():
    ch = build_channel(sms(to="+14155550100", provider="twilio", account_sid=SID, auth_token="tok",
                           messaging_service_sid="MG" + "a" * 32, max_segments=1))
    url, body, headers = ch._via.request(dataclasses.replace(N, body="x" * 400))
    assert url == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert set(form) == {"To", "MessagingServiceSid", "Body"} and segments(form["Body"]) == 1
    assert form["Body"].endswith("...") and headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_voice_twiml_reads_the_alert_escaped_and_gathers_one_digit():
    n = Notification("a&1:ana-phone:esc1", "a&1", "acme", "critical", 'truck <b>"7"</b> & co', "it's late")
    ch = build_channel(voice())
    doc = ch.form(n)["Twiml"]
    root = ET.fromstring(doc)
    gather = root.find("Gather")
    assert root.tag == "Response" and gather.attrib["numDigits"] == "1" and gather.attrib["method"] == "POST"
    action = urlparse(gather.attrib["action"])
    assert (action.scheme, action.netloc, action.path) == ("https", "geoflux.example.com", "/api/v1/webhooks/twilio/voice")
    assert parse_qs(action.query) == {"alert_id": ["a&1"], "channel": ["ana-phone"], "delivery_id": ["a&1:ana-phone:esc1"]}
    said = [s.text for s in gather.findall("Say")]
    assert said[0] == "Geoflux alert, severity critical. truck <b>\"7\"</b> & co. it's late"
    assert "Press 1" in said[1] and root.findall("Say")  # what is said when nobody presses a key


def test_voice_twiml_stays_xml_whatever_the_alert_holds():
    n = Notification("a1:x", "a1", "acme", "high", "bad\x00bytes\x1b[31m", "\ud800 and \x0c")
    root = ET.fromstring(build_channel(voice()).form(n)["Twiml"])
    assert root.find("Gather/Say").text == "Geoflux alert, severity high. bad bytes [31m.   and  "


def test_voice_twiml_fits_twilios_limit():
    doc = twiml("word " * 2000, "https://geoflux.example.com/api/v1/webhooks/twilio/voice?alert_id=a", {})
    assert len(doc) <= MAX_TWIML and ET.fromstring(doc).find("Gather/Say").text.endswith("...")


def test_a_resolution_call_has_no_keypress():
    ch = build_channel(voice(call_on_resolve=True))
    n = Notification("a1:ana-phone:resolve", "a1", "acme", "high", "t", "resolved by x", action="resolve")
    root = ET.fromstring(ch.form(n)["Twiml"])
    assert root.find("Gather") is None and root.find("Hangup") is not None


# -- Twilio's webhook signature ------------------------------------------------------------
# Vectors from twilio-python's tests (tests/unit/test_request_validator.py), the reference
# implementation of https://www.twilio.com/docs/usage/security#validating-requests

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
          "To": "+18005551212", "Caller": "+14158675309"}


def test_signature_matches_twilios_published_vector():
    assert signature(TOKEN, URL, PARAMS.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_sign(TOKEN, URL, PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="  # the fake signs the same
    assert valid_signature(TOKEN, URL, PARAMS.items(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_signature_of_repeated_parameters_sorts_and_dedups_values():
    params = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234"), ("Digits", "1234")]
    assert signature(TOKEN, URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize("url,sig", [
    ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),  # port dropped
    ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),   # port kept
    (URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),                                                  # :443 added
    ("http://mycompany.com/myapp.php?foo=1&bar=2", "0ZXoZLH/DfblKGATFgpif+LLRf4="),         # :80 added
])
def test_signature_with_and_without_the_port(url, sig):
    assert valid_signature(TOKEN, url, PARAMS.items(), sig)


@pytest.mark.parametrize("change", ["param", "url", "token", "missing", "empty-token"])
def test_a_changed_request_does_not_verify(change):
    params, url, token, sig = dict(PARAMS), URL, TOKEN, "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    if change == "param":
        params["Digits"] = "1"
    elif change == "url":
        url = URL.replace("foo=1", "foo=2")
    elif change == "token":
        token = "54321"
    elif change == "missing":
        sig = None
    else:
        token = ""
    assert not valid_signature(token, url, params.items(), sig)


def test_an_unknown_kind_setting_is_not_a_channel_config_crash():
    with pytest.raises(ValidationError):
        parse_channel({"name": "x", "kind": "voice", "tenant_id": "acme", "settings": "nope"})
    assert build_channel(ChannelConfig("x", "sms", "acme", {"to": "+14155550100"})).kind == "sms"


@pytest.mark.parametrize("kind", [{}, [], 7, None, "fax"])
def test_a_kind_that_is_no_known_name_is_refused_with_the_reason(kind):
    # a JSON object or array as the kind answered 500 (unhashable), found by the API fuzzing
    with pytest.raises(ValidationError, match="kind must be one of"):
        parse_channel({"name": "x", "kind": kind, "tenant_id": "acme"})
