"""Escalation policies and the alert lifecycle, pure: level timing, severity override, stop on
acknowledge/resolve, policy choice; rules that resolve their own alerts."""

import pytest

from geoflux.errors import ValidationError
from streams.alerting.escalation import (apply_action, channels_to_tell, escalate, first_due,
                                         parse_policy, policy_for)
from streams.alerting.rules import flatten, matches, parse_rule, resolve_key, resolves

POLICY = parse_policy({"policy_id": "oncall", "tenant_id": "acme", "severities": ["high"],
                       "levels": [{"delay_s": 60, "channels": ["email"]},
                                  {"delay_s": 300, "channels": ["pager", "sms"], "severity_override": "critical"}]})


def status(**kw):
    st = {"alert_id": "a1", "status": "SENT", "severity": "high", "created_ms": 1_000_000,
          "escalation_level": 0, "next_escalation_ms": first_due(POLICY, 1_000_000),
          "channels": {"slack": "SENT", "webhook": "FAILED"}}
    return {**st, **kw}


def test_levels_fire_on_time_in_order_with_the_severity_override():
    st = status()
    assert st["next_escalation_ms"] == 1_060_000
    assert escalate(st, POLICY, 1_059_999) == [] and st["escalation_level"] == 0
    [first] = escalate(st, POLICY, 1_060_000)
    assert first.channels == ("email",) and st["severity"] == "high"
    assert st["next_escalation_ms"] == 1_300_000
    [second] = escalate(st, POLICY, 1_300_000)
    assert second.channels == ("pager", "sms") and st["severity"] == "critical"
    assert st["next_escalation_ms"] is None and escalate(st, POLICY, 9_999_999) == []


def test_a_late_tick_fires_every_level_that_is_due_once():
    st = status()
    fired = escalate(st, POLICY, 2_000_000)  # e.g. the worker was down across both levels
    assert [lv.channels for lv in fired] == [("email",), ("pager", "sms")]
    assert escalate(st, POLICY, 2_000_001) == []


@pytest.mark.parametrize("action", ["ACK", "RESOLVE"])
def test_acknowledge_or_resolve_stops_escalation(action):
    st = status()
    resolved = apply_action(st, {"action": action, "at_ms": 1_010_000, "by": "ops"})
    assert resolved == (action == "RESOLVE") and st["next_escalation_ms"] is None
    assert escalate(st, POLICY, 2_000_000) == [] and st["escalation_level"] == 0
    assert st["status"] == {"ACK": "ACKNOWLEDGED", "RESOLVE": "RESOLVED"}[action]


def test_resolved_is_final_and_only_delivered_channels_are_told():
    st = status()
    assert apply_action(st, {"action": "ACK", "at_ms": 1, "by": "a"}) is False
    assert apply_action(st, {"action": "ACK", "at_ms": 2, "by": "b"}) is False and st["acknowledged_by"] == "a"
    assert apply_action(st, {"action": "RESOLVE", "at_ms": 3, "by": "c"}) is True
    assert apply_action(st, {"action": "RESOLVE", "at_ms": 4, "by": "d"}) is False
    assert apply_action(st, {"action": "ACK", "at_ms": 5, "by": "e"}) is False and st["status"] == "RESOLVED"
    assert channels_to_tell(st) == ["slack"]
    assert apply_action(status(status="SUPPRESSED"), {"action": "RESOLVE", "at_ms": 1, "by": "x"}) is False


def test_policy_choice_named_or_by_tenant_and_severity():
    other = parse_policy({"policy_id": "b-other", "tenant_id": "globex", "severities": ["high"],
                          "levels": [{"delay_s": 1, "channels": ["x"]}]})
    same_id = parse_policy({"policy_id": "oncall", "tenant_id": "globex", "severities": ["warning"],
                            "levels": [{"delay_s": 1, "channels": ["x"]}]})
    policies = {"acme/oncall": POLICY, "globex/b-other": other, "globex/oncall": same_id}  # keyed tenant/id
    assert policy_for(policies, "acme", "high", None) is POLICY
    assert policy_for(policies, "acme", "warning", None) is None
    assert policy_for(policies, "acme", "warning", "oncall") is POLICY  # named by the rule
    assert policy_for(policies, "globex", "high", "oncall") is same_id  # the same id, its own tenant's
    assert policy_for(policies, "acme", "high", "b-other") is None  # never another tenant's
    assert escalate(status(), None, 2_000_000) == []  # the policy was deleted: stops


@pytest.mark.parametrize("change,reason", [
    ({"levels": []}, "levels"),
    ({"levels": [{"delay_s": -1, "channels": ["x"]}]}, "delay_s"),
    ({"levels": [{"delay_s": 5, "channels": ["x"]}, {"delay_s": 5, "channels": ["y"]}]}, "later"),
    ({"levels": [{"delay_s": 5, "channels": []}]}, "channels"),
    ({"levels": [{"delay_s": 5, "channels": ["x"], "severity_override": "urgent"}]}, "severity_override"),
    ({"severities": ["loud"]}, "severities"),
])
def test_bad_policies_have_reasons(change, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_policy({**POLICY.to_json(), **change})


def test_a_rule_resolves_its_own_alerts_by_entity_and_geofence():
    rule = parse_rule({"rule_id": "restricted", "tenant_id": "acme", "severity": "critical",
                       "match": {"event_type": "ENTER", "geofence_id": "zone-7"},
                       "resolve_when": {"event_type": "EXIT"}, "channels": ["pager"],
                       "escalation_policy": "oncall"})
    enter = {"tenant_id": "acme", "event_type": "ENTER", "geofence_id": "zone-7", "entity_id": "v1"}
    leave = dict(enter, event_type="EXIT")
    assert matches(rule, "geofence", enter) and not resolves(rule, "geofence", enter, flatten(enter))
    assert resolves(rule, "geofence", leave, flatten(leave)) and not matches(rule, "geofence", leave)
    assert resolve_key(rule, flatten(enter)) == resolve_key(rule, flatten(leave))
    assert resolve_key(rule, flatten(enter)) != resolve_key(rule, flatten(dict(leave, entity_id="v2")))
    assert not resolves(rule, "geofence", dict(leave, tenant_id="globex"), flatten(leave))
    assert rule.to_json()["escalation_policy"] == "oncall"
    with pytest.raises(ValidationError, match="resolve_when"):
        parse_rule({**rule.to_json(), "resolve_when": {"colour": "red"}})
    with pytest.raises(ValidationError, match="resolve_by"):
        parse_rule({**rule.to_json(), "resolve_by": ["colour"]})


# -- delivery SLA ----------------------------------------------------------------------------

from streams.alerting.sla import ALL_CHANNELS, Delivery, attainment, parse_targets  # noqa: E402

TARGETS = parse_targets({"critical": {"within_s": 30, "target": 0.999}, "high": {"within_s": 120, "target": 0.99}})


def test_sla_counts_late_and_missing_deliveries_as_misses_and_waits_for_undecided():
    now = 10_000_000
    ds = [Delivery("critical", "pager", now - 100_000, now - 100_000 + 30_000),  # exactly on time
          Delivery("critical", "pager", now - 100_000, now - 100_000 + 30_001),  # 1 ms late
          Delivery("critical", "pager", now - 100_000, None),  # never delivered, past deadline
          Delivery("critical", "pager", now - 10_000, None),  # still within its 30 s: undecided
          Delivery("critical", "pager", now - 4_000_000, now - 4_000_000 + 1)]  # outside the window
    [row] = attainment(ds, TARGETS, now, window_ms=3_600_000)
    assert (row["alerts"], row["decided"], row["met"], row["missed"]) == (4, 3, 1, 2)
    assert row["attainment"] == pytest.approx(1 / 3) and row["breached"]
    assert row["p50_s"] == 30.001 and row["p99_s"] == 30.001


def test_sla_rows_per_severity_and_channel_and_minimum_samples():
    now = 1_000_000
    ds = [Delivery("high", ALL_CHANNELS, now - 5000, now - 4000), Delivery("high", "slack", now - 5000, None),
          Delivery("info", "x", now - 5000, now)]  # no target for info: ignored
    rows = attainment(ds, TARGETS, now + 200_000, 3_600_000, min_samples=2)
    assert [(r["severity"], r["channel"], r["attainment"], r["breached"]) for r in rows] == [
        ("high", "*", 1.0, False), ("high", "slack", 0.0, False)]  # one sample: not a breach yet
    with pytest.raises(Exception, match="target"):
        parse_targets({"high": {"within_s": 10, "target": 2}})
