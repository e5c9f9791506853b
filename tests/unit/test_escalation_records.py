"""Escalation policies and the alert lifecycle, whole: a policy as parsed and listed, every
refusal's wording (the API's 422 detail), and the status record after each action, every
field of it (the status topic is what the console and the API show)."""

import pytest

from geoflux.errors import ValidationError
from streams.alerting.escalation import (
    EscalationPolicy,
    Level,
    apply_action,
    escalate,
    parse_policy,
)

LEVEL = {"delay_s": 60, "channels": ["email"]}


def policy(**kw):
    return parse_policy({"policy_id": "oncall", "tenant_id": "acme", "levels": [LEVEL], **kw})


def test_policy_parsed_whole():
    p = parse_policy({"policy_id": "oncall", "tenant_id": "acme", "severities": ["high", "critical"],
                      "levels": [{"delay_s": 0, "channels": ["email"]},
                                 {"delay_s": 1.5, "channels": ["pager", "sms"], "severity_override": "critical"}]})
    assert p == EscalationPolicy("oncall", "acme", ("high", "critical"),
                                 (Level(0, ("email",), None), Level(1_500, ("pager", "sms"), "critical")))
    assert p.to_json() == {"policy_id": "oncall", "tenant_id": "acme", "severities": ["high", "critical"],
                           "levels": [{"delay_s": 0.0, "channels": ["email"], "severity_override": None},
                                      {"delay_s": 1.5, "channels": ["pager", "sms"], "severity_override": "critical"}]}


def test_policy_id_given_by_the_path_and_no_severities():
    p = parse_policy({"tenant_id": "acme", "levels": [LEVEL]}, "from-path")
    assert (p.policy_id, p.severities) == ("from-path", ())


@pytest.mark.parametrize("delay", [0, 0.5, 604_800])
def test_level_delays_at_the_edges_are_accepted(delay):
    assert policy(levels=[{"delay_s": delay, "channels": ["email"]}]).levels[0].delay_ms == int(delay * 1000)


def test_ten_levels_are_accepted():
    levels = [{"delay_s": i, "channels": ["email"]} for i in range(10)]
    assert len(policy(levels=levels).levels) == 10


@pytest.mark.parametrize("body,reason", [
    ({"policy_id": None}, "policy_id must be 1-120 characters of letters, digits, . _ : -"),
    ({"tenant_id": None}, "tenant_id is required"),
    ({"severities": ["loud"]}, "severities must be a list of critical, high, warning, info"),
    ({"severities": "high"}, "severities must be a list of critical, high, warning, info"),
    ({"levels": []}, "levels must be a list of 1-10 levels"),
    ({"levels": [{"delay_s": i, "channels": ["e"]} for i in range(11)]}, "levels must be a list of 1-10 levels"),
    ({"levels": [LEVEL, "pager"]}, "levels[1] must be an object"),
    ({"levels": [{"delay_s": True, "channels": ["e"]}]}, "levels[0].delay_s must be a number of seconds in [0, 604800]"),
    ({"levels": [{"delay_s": "60", "channels": ["e"]}]}, "levels[0].delay_s must be a number of seconds in [0, 604800]"),
    ({"levels": [{"delay_s": -1, "channels": ["e"]}]}, "levels[0].delay_s must be a number of seconds in [0, 604800]"),
    ({"levels": [{"delay_s": 604_800.5, "channels": ["e"]}]},
     "levels[0].delay_s must be a number of seconds in [0, 604800]"),
    ({"levels": [LEVEL, {"delay_s": 60, "channels": ["e"]}]}, "levels[1].delay_s must be later than the level before it"),
    ({"levels": [{"delay_s": 1, "channels": []}]}, "levels[0].channels must be a non-empty list of channel names"),
    ({"levels": [{"delay_s": 1, "channels": [""]}]}, "levels[0].channels must be a non-empty list of channel names"),
    ({"levels": [{"delay_s": 1, "channels": ["e", 5]}]}, "levels[0].channels must be a non-empty list of channel names"),
    ({"levels": [{"delay_s": 1, "channels": ["e"], "severity_override": "loud"}]},
     "levels[0].severity_override must be one of critical, high, warning, info"),
])
def test_a_refused_policy_says_why(body, reason):
    """`body`: what differs from a valid policy (None: the field is left out)."""
    full = {k: v for k, v in {"policy_id": "oncall", "tenant_id": "acme", "levels": [LEVEL], **body}.items()
            if v is not None}
    with pytest.raises(ValidationError) as refused:
        parse_policy(full)
    assert str(refused.value) == reason


def test_a_policy_that_is_not_an_object_is_refused():
    with pytest.raises(ValidationError) as refused:
        parse_policy([])
    assert str(refused.value) == "a policy must be a JSON object"


def alert(**kw):
    return {"alert_id": "a1", "status": "SENT", "severity": "high", "created_ms": 1_000_000,
            "escalation_level": 0, "next_escalation_ms": 1_060_000, **kw}


@pytest.mark.parametrize("state", ["ACKNOWLEDGED", "RESOLVED", "SUPPRESSED"])
def test_a_closed_alert_stops_escalating_and_clears_its_timer(state):
    st = alert(status=state)
    assert escalate(st, policy(), 2_000_000) == []
    assert st == alert(status=state, next_escalation_ms=None)


def test_an_open_alert_without_a_timer_does_not_escalate():
    st = alert(next_escalation_ms=None)
    assert escalate(st, policy(), 2_000_000) == []
    assert st == alert(next_escalation_ms=None)


def test_acknowledge_then_resolve_status_whole():
    st = alert()
    assert apply_action(st, {"action": "ACK", "at_ms": 1_010_000, "by": "ana"}) is False
    assert st == alert(status="ACKNOWLEDGED", acknowledged_ms=1_010_000, acknowledged_by="ana",
                       next_escalation_ms=None)
    assert apply_action(st, {"action": "RESOLVE", "at_ms": 1_020_000, "by": "bo"}) is True
    assert st == alert(status="RESOLVED", acknowledged_ms=1_010_000, acknowledged_by="ana",
                       resolved_ms=1_020_000, resolved_by="bo", next_escalation_ms=None)


def test_an_alert_whose_policy_is_gone_stops_escalating_and_clears_its_timer():
    st = alert()
    assert escalate(st, None, 2_000_000) == []
    assert st == alert(next_escalation_ms=None)
