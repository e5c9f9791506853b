"""Rules, templates, noise control, retry schedule, circuit breaker, status: pure and fast."""

import pytest

from geoflux.errors import ValidationError
from streams.alerting.delivery_policy import CircuitBreaker, RetryPolicy, overall_status
from streams.alerting.noise import (TenantNoiseState, decide, fingerprint, parse_silence)
from streams.alerting.rules import flatten, matches, parse_rule, render

RULE = {"rule_id": "r1", "tenant_id": "acme", "severity": "critical", "source": "geofence",
        "match": {"event_type": ["ENTER"], "geofence_id": "zone-7"}, "channels": ["slack"],
        "fallback_channel": "email", "title": "{entity_id} entered {geofence_id}",
        "body": "at {ts} (v{geofence_version}) speed {attributes.speed}"}
EVENT = {"event_id": "e1", "event_type": "ENTER", "entity_id": "truck-1", "geofence_id": "zone-7",
         "geofence_version": 3, "tenant_id": "acme", "lon": 1.0, "lat": 2.0,
         "ts_ms": 1_764_000_000_000, "source": "loc:1", "reason": None,
         "attributes": {"speed": "42"}}


@pytest.mark.parametrize("change,reason", [
    ({"severity": "urgent"}, "severity must be one of"),
    ({"channels": []}, "channels must be a non-empty list"),
    ({"match": {"colour": "red"}}, "match field 'colour' does not exist"),
    ({"title": "{nope}"}, r"unknown field\(s\) \['nope'\]"),
    ({"title": "{unclosed"}, "malformed"),
    ({"fallback_channel": "slack"}, "fallback_channel must be"),
    ({"rule_id": "bad id!"}, "rule_id must be"),
    ({"dedup_window_s": -1}, "dedup_window_s"),
    ({"source": "weather"}, "source must be one of"),
])
def test_bad_rules_are_rejected_with_a_reason(change, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_rule({**RULE, **change})


def test_rule_matching_and_rendering():
    rule = parse_rule(RULE)
    assert matches(rule, "geofence", EVENT)
    assert not matches(rule, "geofence", {**EVENT, "event_type": "EXIT"})
    assert not matches(rule, "geofence", {**EVENT, "tenant_id": "other"})
    assert not matches(rule, "cep", EVENT)
    flat = flatten(EVENT)
    assert render(rule.title, flat) == "truck-1 entered zone-7"
    assert render(rule.body, flat) == "at 2025-11-24T16:00:00Z (v3) speed 42"


def test_fingerprint_ignores_label_order():
    assert fingerprint("r", {"a": "1", "b": "2"}) == fingerprint("r", {"b": "2", "a": "1"})
    assert fingerprint("r", {"a": "1"}) != fingerprint("r", {"a": "2"})


def test_dedup_window_per_severity_then_released():
    s = TenantNoiseState()
    kw = dict(fp="f", severity="critical", labels={}, silences=[])
    assert decide(s, now_ms=0, **kw).allowed
    second = decide(s, now_ms=299_000, **kw)
    assert not second.allowed and "duplicate" in second.reason
    assert decide(s, now_ms=300_000, **kw).allowed  # 5 minutes for critical


def test_windows_of_other_severities_are_not_forgotten_early():
    s = TenantNoiseState()
    assert decide(s, fp="info", severity="info", labels={}, silences=[], now_ms=0).allowed
    assert decide(s, fp="crit", severity="critical", labels={}, silences=[], now_ms=600_000).allowed
    assert not decide(s, fp="info", severity="info", labels={}, silences=[], now_ms=700_000).allowed


def test_rate_limit_per_severity_per_hour():
    s = TenantNoiseState()
    results = [decide(s, fp=f"f{i}", severity="warning", labels={}, silences=[], now_ms=i).allowed
               for i in range(7)]
    assert results == [True] * 5 + [False] * 2
    assert decide(s, fp="next-hour", severity="warning", labels={}, silences=[],
                  now_ms=3_600_000).allowed


def test_silences_match_labels_in_their_time_range():
    sil = parse_silence({"tenant_id": "acme", "starts_ms": 100, "ends_ms": 200, "matchers": [
        {"name": "geofence_id", "value": "zone-.*", "regex": True},
        {"name": "entity_id", "value": "vip", "negate": True}]}, "s1", 0)
    s = TenantNoiseState()
    labels = {"geofence_id": "zone-7", "entity_id": "truck"}
    d = decide(s, fp="f", severity="info", labels=labels, silences=[sil], now_ms=150)
    assert not d.allowed and d.reason == "silenced by s1"
    assert decide(s, fp="f", severity="info", labels={**labels, "entity_id": "vip"},
                  silences=[sil], now_ms=150).allowed
    assert decide(s, fp="g", severity="info", labels=labels, silences=[sil], now_ms=250).allowed
    with pytest.raises(ValidationError, match="ends_ms"):
        parse_silence({"tenant_id": "a", "matchers": [{"name": "a", "value": "b"}]}, "s", 0)
    with pytest.raises(ValidationError, match="not a valid regex"):
        parse_silence({"tenant_id": "a", "ends_ms": 9, "starts_ms": 1,
                       "matchers": [{"name": "a", "value": "(", "regex": True}]}, "s", 0)


@pytest.mark.parametrize("failed,retry_after,expected", [
    (1, None, ("retry", 1.0)), (2, None, ("retry", 2.0)), (3, None, ("dlq", 30.0)),
    (4, None, ("dlq", 120.0)), (5, None, ("abandon", 0.0)), (1, 7.0, ("retry", 7.0)),
])
def test_retry_schedule(failed, retry_after, expected):
    assert RetryPolicy().next_step(failed, retry_after) == expected


def test_circuit_breaker_opens_after_five_and_lets_critical_through():
    cb = CircuitBreaker()
    for i in range(4):
        cb.record(False, i)
    assert cb.state(4) == "closed"
    cb.record(False, 4)
    assert cb.state(5) == "open" and not cb.allows(5, critical=False) and cb.allows(5, critical=True)
    assert cb.state(64) == "half-open" and cb.allows(64, critical=False)
    cb.record(False, 64)  # a failed probe opens it again at once
    assert cb.state(65) == "open"
    cb.record(True, 130)
    assert cb.state(130) == "closed" and cb.failures == 0


@pytest.mark.parametrize("channels,expected", [
    ({"slack": "SENT", "pager": "SENT"}, "SENT"),
    ({"slack": "SENT", "pager": "RETRYING"}, "PARTIALLY_SENT"),
    ({"slack": "DEAD_LETTERED", "email": "SENT"}, "SENT"),  # the fallback delivered
    ({"slack": "DEAD_LETTERED"}, "DEAD_LETTERED"),
    ({"slack": "ABANDONED"}, "ABANDONED"),
    ({"slack": "PERMANENT_FAILURE"}, "FAILED"),
    ({"slack": "PENDING"}, "PENDING"),
    ({"slack": "DEAD_LETTERED", "pager": "ABANDONED"}, "DEAD_LETTERED"),
    ({"slack": "DISABLED", "pager": "RETRYING"}, "FAILED"),
    ({"email": "SENT"}, "PENDING"),  # only a fallback: no primary has been asked yet
])
def test_overall_status(channels, expected):
    assert overall_status(channels, {"slack": "email"}) == expected
