"""Alert rules whole: a rule as parsed and listed with every default, every refusal's wording
(the API's 422 detail), the flat view templates render, and the resolve key (an identity kept
in the noise state, so pinned to its digits)."""

import hashlib

import pytest

from geoflux.errors import ValidationError
from streams.alerting.rules import (
    AlertRule,
    flatten,
    matches,
    parse_rule,
    render,
    resolve_key,
    resolves,
)

MINIMAL = {"rule_id": "r1", "tenant_id": "acme", "severity": "high", "channels": ["slack"]}
EVENT = {"event_id": "e1", "event_type": "ENTER", "entity_id": "truck-1", "geofence_id": "zone-7",
         "tenant_id": "acme", "ts_ms": 1_764_000_000_000, "reason": None}


def test_minimal_rule_parsed_whole_with_its_defaults():
    r = parse_rule(MINIMAL)
    assert r == AlertRule("r1", "acme", "high", "geofence", {}, ("slack",), "{event_type} {entity_id} {geofence_id}",
                          "", None, None, True, {}, None, None, ("entity_id", "geofence_id"))
    assert r.to_json() == {"rule_id": "r1", "tenant_id": "acme", "severity": "high", "source": "geofence",
                           "match": {}, "channels": ["slack"], "title": "{event_type} {entity_id} {geofence_id}",
                           "body": "", "fallback_channel": None, "dedup_window_s": None, "enabled": True,
                           "labels": {}, "escalation_policy": None, "resolve_when": None,
                           "resolve_by": ["entity_id", "geofence_id"]}


def test_full_rule_parsed_whole():
    r = parse_rule({"tenant_id": "acme", "severity": "info", "source": "cep", "channels": ["slack", "sms"],
                    "match": {"pattern_id": ["p1", 2]}, "fallback_channel": "email", "title": "{key}",
                    "body": "{attributes.x}", "dedup_window_s": 0.5, "enabled": False, "labels": {"team": 5},
                    "escalation_policy": "oncall", "resolve_when": {"severity": "info"},
                    "resolve_by": ["key"]}, "from-path")
    assert r == AlertRule("from-path", "acme", "info", "cep", {"pattern_id": ("p1", "2")}, ("slack", "sms"),
                          "{key}", "{attributes.x}", "email", 0.5, False, {"team": "5"}, "oncall",
                          {"severity": ("info",)}, ("key",))
    assert r.to_json()["resolve_when"] == {"severity": ["info"]}


def test_defaults_per_source():
    assert parse_rule({**MINIMAL, "source": "any"}).resolve_by == ()
    assert parse_rule({**MINIMAL, "source": "job", "title": "{job_id}"}).resolve_by == ("job_id",)
    assert parse_rule({**MINIMAL, "dedup_window_s": 0}).dedup_window_s == 0.0
    assert parse_rule({**MINIMAL, "labels": []}).labels == {}


@pytest.mark.parametrize("change,reason", [
    ({"rule_id": None}, "rule_id must be 1-120 characters of letters, digits, . _ : -"),
    ({"tenant_id": None}, "tenant_id is required"),
    ({"severity": "urgent"}, "severity must be one of critical, high, warning, info"),
    ({"source": "weather"}, "source must be one of geofence, cep, job, any"),
    ({"channels": None}, "channels must be a non-empty list of channel names"),
    ({"channels": ["slack", 5]}, "channels must be a non-empty list of channel names"),
    ({"channels": [""]}, "channels must be a non-empty list of channel names"),
    ({"fallback_channel": "slack"}, "fallback_channel must be a channel name not already in channels"),
    ({"fallback_channel": 5}, "fallback_channel must be a channel name not already in channels"),
    ({"title": ""}, "title must be a non-empty string and body a string"),
    ({"title": 5}, "title must be a non-empty string and body a string"),
    ({"body": 5}, "title must be a non-empty string and body a string"),
    ({"title": "{nope} {nada}"}, "template uses unknown field(s) ['nada', 'nope']"),
    ({"dedup_window_s": -0.5}, "dedup_window_s must be a non-negative number of seconds"),
    ({"dedup_window_s": True}, "dedup_window_s must be a non-negative number of seconds"),
    ({"dedup_window_s": "10"}, "dedup_window_s must be a non-negative number of seconds"),
    ({"labels": "team=a"}, "labels must be an object"),
    ({"escalation_policy": ""}, "escalation_policy must be a policy id"),
    ({"escalation_policy": 5}, "escalation_policy must be a policy id"),
    ({"resolve_when": {}}, "resolve_when must match at least one field"),
    ({"resolve_when": "EXIT"}, "resolve_when must be an object of field -> value or [values]"),
    ({"resolve_when": {"colour": "red"}}, "resolve_when field 'colour' does not exist on geofence records"),
    ({"match": "ENTER"}, "match must be an object of field -> value or [values]"),
    ({"match": {"event_type": []}}, "match.event_type must be a value or a non-empty list of values"),
    ({"match": {"event_type": [{}]}}, "match.event_type must be a value or a non-empty list of values"),
    ({"resolve_by": "entity_id"}, "resolve_by must be a list of fields of geofence records"),
    ({"resolve_by": ["colour"]}, "resolve_by must be a list of fields of geofence records"),
])
def test_a_refused_rule_says_why(change, reason):
    body = {k: v for k, v in {**MINIMAL, **change}.items() if v is not None}
    with pytest.raises(ValidationError) as refused:
        parse_rule(body)
    assert str(refused.value) == reason


def test_a_rule_that_is_not_an_object_is_refused():
    with pytest.raises(ValidationError) as refused:
        parse_rule([])
    assert str(refused.value) == "a rule must be a JSON object"


def test_flatten_whole():
    assert flatten({**EVENT, "attributes": {"speed": 42}, "ring": [1], "raw": b"x"}) == {
        "event_id": "e1", "event_type": "ENTER", "entity_id": "truck-1", "geofence_id": "zone-7",
        "tenant_id": "acme", "ts_ms": "1764000000000", "reason": "", "attributes.speed": "42",
        "ts": "2025-11-24T16:00:00Z"}


@pytest.mark.parametrize("field", ["end_ms", "updated_ms"])
def test_flatten_takes_the_time_of_a_record_without_ts_ms(field):
    flat = flatten({"tenant_id": "acme", field: 1_764_000_000_000})
    assert (flat["ts_ms"], flat["ts"]) == ("1764000000000", "2025-11-24T16:00:00Z")


def test_any_source_rules_match_and_resolve_every_source():
    rule = parse_rule({**MINIMAL, "source": "any", "match": {"tenant_id": "acme"},
                       "resolve_when": {"tenant_id": "acme"}, "title": "x"})
    for source in ("geofence", "cep", "job"):
        assert matches(rule, source, EVENT) and resolves(rule, source, EVENT, flatten(EVENT))
    off = parse_rule({**MINIMAL, "source": "any", "resolve_when": {"tenant_id": "acme"}, "enabled": False, "title": "x"})
    assert not matches(off, "geofence", EVENT) and not resolves(off, "geofence", EVENT, flatten(EVENT))
    other = parse_rule({**MINIMAL, "source": "cep", "resolve_when": {"tenant_id": "acme"}, "title": "x"})
    assert not resolves(other, "geofence", EVENT, flatten(EVENT))
    assert not resolves(parse_rule(MINIMAL), "geofence", EVENT, flatten(EVENT))  # no resolve_when


def test_resolve_key_is_pinned():
    """sha256 of rule id and resolve_by values joined by US, 32 hex digits; a missing field is ""."""
    rule = parse_rule(MINIMAL)
    assert resolve_key(rule, {"entity_id": "truck-1", "geofence_id": "zone-7"}) == "64eb159213e01d247116881c13538da6"
    assert resolve_key(rule, {"entity_id": "truck-1"}) == hashlib.sha256(b"r1\x1ftruck-1\x1f").hexdigest()[:32]


def test_render_leaves_a_missing_field_empty():
    assert render("[{entity_id}] [{attributes.none}]", {"entity_id": "truck-1"}) == "[truck-1] []"
