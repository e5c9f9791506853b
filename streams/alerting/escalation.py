"""Escalation policies and the alert lifecycle (acknowledge, resolve). Pure: no I/O.

A policy belongs to a tenant and applies to the severities it lists (or to rules that name
it). Its levels fire in order, each `delay_s` after the alert was created, unless the alert
was acknowledged or resolved first — the seed's shape:

    {"policy_id": "critical-oncall", "tenant_id": "acme", "severities": ["critical"],
     "levels": [{"delay_s": 300, "channels": ["ops-email"], "severity_override": "critical"},
                {"delay_s": 900, "channels": ["pager"]}]}

The rule's own channels are the first line (sent at once); levels are what happens when
nobody answers. The timer is a field of the alert's status record (`next_escalation_ms`),
which is the status stage's changelog: it survives a restart and fires on the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError
from geoflux.keys import scoped
from streams.alerting.rules import SEVERITIES
from streams.config_validation import object_id_and_tenant

MAX_LEVELS = 10
CLOSED = ("ACKNOWLEDGED", "RESOLVED", "SUPPRESSED")


@dataclass(frozen=True, slots=True)
class Level:
    delay_ms: int
    channels: tuple[str, ...]
    severity_override: str | None = None


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    policy_id: str
    tenant_id: str
    severities: tuple[str, ...]
    levels: tuple[Level, ...]

    def to_json(self) -> dict:
        return {"policy_id": self.policy_id, "tenant_id": self.tenant_id,
                "severities": list(self.severities),
                "levels": [{"delay_s": lv.delay_ms / 1000, "channels": list(lv.channels),
                            "severity_override": lv.severity_override} for lv in self.levels]}


def parse_policy(body: object, policy_id: str | None = None) -> EscalationPolicy:
    body, pid, tenant = object_id_and_tenant(body, "policy", "policy_id", policy_id)
    severities = body.get("severities", [])
    if not isinstance(severities, list) or not all(s in SEVERITIES for s in severities):
        raise ValidationError(f"severities must be a list of {', '.join(SEVERITIES)}")
    levels = body.get("levels")
    if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
        raise ValidationError(f"levels must be a list of 1-{MAX_LEVELS} levels")
    parsed, last = [], -1.0
    for i, lv in enumerate(levels):
        if not isinstance(lv, dict):
            raise ValidationError(f"levels[{i}] must be an object")
        delay = lv.get("delay_s")
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 7 * 86_400:
            raise ValidationError(f"levels[{i}].delay_s must be a number of seconds in [0, 604800]")
        if delay <= last:
            raise ValidationError(f"levels[{i}].delay_s must be later than the level before it")
        last = delay
        channels = lv.get("channels")
        if not isinstance(channels, list) or not channels or not all(isinstance(c, str) and c for c in channels):
            raise ValidationError(f"levels[{i}].channels must be a non-empty list of channel names")
        override = lv.get("severity_override")
        if override is not None and override not in SEVERITIES:
            raise ValidationError(f"levels[{i}].severity_override must be one of {', '.join(SEVERITIES)}")
        parsed.append(Level(int(delay * 1000), tuple(channels), override))
    return EscalationPolicy(pid, tenant, tuple(severities), tuple(parsed))


def policy_for(policies: dict[str, EscalationPolicy], tenant: str, severity: str,
               named: str | None) -> EscalationPolicy | None:
    """The rule's named policy (if it is the tenant's), else the tenant's policy for the
    severity (the lowest id wins a tie, so every worker picks the same one)."""
    if named:
        p = policies.get(scoped(tenant, named))
        return p if p is not None and p.tenant_id == tenant else None
    for pid in sorted(policies):
        p = policies[pid]
        if p.tenant_id == tenant and severity in p.severities:
            return p
    return None


def first_due(policy: EscalationPolicy | None, created_ms: int) -> int | None:
    return created_ms + policy.levels[0].delay_ms if policy else None


def escalate(status: dict, policy: EscalationPolicy | None, now_ms: int) -> list[Level]:
    """The levels due now (oldest first), advancing `status` past them. A closed alert, or one
    whose policy is gone, stops escalating."""
    if status["status"] in CLOSED or status["next_escalation_ms"] is None:
        status["next_escalation_ms"] = None
        return []
    if policy is None:
        status["next_escalation_ms"] = None
        return []
    fired = []
    while status["escalation_level"] < len(policy.levels):
        level = policy.levels[status["escalation_level"]]
        if status["created_ms"] + level.delay_ms > now_ms:
            break
        fired.append(level)
        status["escalation_level"] += 1
        if level.severity_override:
            status["severity"] = level.severity_override
    nxt = status["escalation_level"]
    status["next_escalation_ms"] = (status["created_ms"] + policy.levels[nxt].delay_ms
                                    if nxt < len(policy.levels) else None)
    return fired


def apply_action(status: dict, action: dict) -> bool:
    """Acknowledge or resolve. Returns True when the alert was resolved by this action (its
    channels are then told). Resolved is final; acknowledging twice changes nothing."""
    if status["status"] in ("RESOLVED", "SUPPRESSED"):
        return False
    if action["action"] == "ACK":
        if status["status"] == "ACKNOWLEDGED":
            return False
        status.update(status="ACKNOWLEDGED", acknowledged_ms=action["at_ms"],
                      acknowledged_by=action["by"], next_escalation_ms=None)
        return False
    status.update(status="RESOLVED", resolved_ms=action["at_ms"], resolved_by=action["by"],
                  next_escalation_ms=None)
    return True


def channels_to_tell(status: dict) -> list[str]:
    """Channels that received the alert get its resolution (PagerDuty resolves by dedup_key,
    Opsgenie closes by alias, the others get a follow-up message)."""
    return sorted(ch for ch, state in status["channels"].items() if state == "SENT")
