"""Alert rules: validation, matching and message templating. Pure: no I/O.

A rule says which source records raise an alert for a tenant, how severe, through which
channels (and a fallback), with what message, and how long duplicates are held back.

    {"rule_id": "restricted-entry", "tenant_id": "acme", "severity": "critical",
     "source": "geofence", "match": {"event_type": ["ENTER"], "geofence_id": ["zone-7"]},
     "channels": ["ops-slack", "pager"], "fallback_channel": "ops-email",
     "title": "{entity_id} entered {geofence_id}", "body": "at {ts}", "dedup_window_s": 300,
     "escalation_policy": "oncall", "resolve_when": {"event_type": ["EXIT"]}}

`match` maps a field of the source record (or `attributes.NAME`) to accepted values; every
listed field must match one of them. Templates use `{field}` placeholders over the same flat
view; an unknown placeholder is a validation error, never a crash at send time.

`resolve_when` (optional) is a second match: a record of the same source matching it resolves
the rule's open alerts that share its `resolve_by` fields (default: entity and geofence; for
CEP the match key; for jobs the job id) — an EXIT resolving "in restricted zone".
`escalation_policy` names the policy whose levels fire while nobody acknowledges.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from datetime import datetime, timezone

from geoflux.errors import ValidationError
from streams.config_validation import object_id_and_tenant

SEVERITIES = ("critical", "high", "warning", "info")
SOURCES = ("geofence", "cep", "job", "any")
SOURCE_FIELDS = {
    "geofence": {"event_id", "event_type", "entity_id", "geofence_id", "geofence_version",
                 "tenant_id", "lon", "lat", "ts_ms", "ts", "source", "reason"},
    "cep": {"match_id", "pattern_id", "pattern_version", "tenant_id", "key", "severity",
            "start_ms", "end_ms", "ts", "ts_ms"},
    "job": {"job_id", "tenant_id", "process_id", "status", "progress", "message", "tier",
            "attempt", "ts", "ts_ms"},
}
SOURCE_FIELDS["any"] = set().union(*SOURCE_FIELDS.values())
# what ties a resolving record to the alerts it resolves, by default
RESOLVE_BY = {"geofence": ["entity_id", "geofence_id"], "cep": ["pattern_id", "key"], "job": ["job_id"]}


@dataclass(frozen=True, slots=True)
class AlertRule:
    rule_id: str
    tenant_id: str
    severity: str
    source: str
    match: dict[str, tuple[str, ...]]
    channels: tuple[str, ...]
    title: str
    body: str = ""
    fallback_channel: str | None = None
    dedup_window_s: float | None = None  # None: the severity's default
    enabled: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    escalation_policy: str | None = None
    resolve_when: dict[str, tuple[str, ...]] | None = None
    resolve_by: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"rule_id": self.rule_id, "tenant_id": self.tenant_id, "severity": self.severity,
                "source": self.source, "match": {k: list(v) for k, v in self.match.items()},
                "channels": list(self.channels), "title": self.title, "body": self.body,
                "fallback_channel": self.fallback_channel, "dedup_window_s": self.dedup_window_s,
                "enabled": self.enabled, "labels": self.labels,
                "escalation_policy": self.escalation_policy,
                "resolve_when": None if self.resolve_when is None else {
                    k: list(v) for k, v in self.resolve_when.items()},
                "resolve_by": list(self.resolve_by)}


def _placeholders(template: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as exc:
        raise ValidationError(f"template {template!r} is malformed: {exc}") from None


def _field_ok(name: str, source: str) -> bool:
    return name.startswith("attributes.") or name in SOURCE_FIELDS[source]


def parse_rule(body: object, rule_id: str | None = None) -> AlertRule:
    body, rid, tenant = object_id_and_tenant(body, "rule", "rule_id", rule_id)
    severity = body.get("severity")
    if severity not in SEVERITIES:
        raise ValidationError(f"severity must be one of {', '.join(SEVERITIES)}")
    source = body.get("source", "geofence")
    if source not in SOURCES:
        raise ValidationError(f"source must be one of {', '.join(SOURCES)}")
    match = _match_spec(body.get("match") or {}, source, "match")
    channels = body.get("channels")
    if not isinstance(channels, list) or not channels or not all(isinstance(c, str) and c for c in channels):
        raise ValidationError("channels must be a non-empty list of channel names")
    fallback = body.get("fallback_channel")
    if fallback is not None and (not isinstance(fallback, str) or fallback in channels):
        raise ValidationError("fallback_channel must be a channel name not already in channels")
    title, text = body.get("title", "{event_type} {entity_id} {geofence_id}"), body.get("body", "")
    if not isinstance(title, str) or not title or not isinstance(text, str):
        raise ValidationError("title must be a non-empty string and body a string")
    for tmpl in (title, text):
        unknown = {p for p in _placeholders(tmpl) if not _field_ok(p, source)}
        if unknown:
            raise ValidationError(f"template uses unknown field(s) {sorted(unknown)}")
    window = body.get("dedup_window_s")
    if window is not None and (not isinstance(window, (int, float)) or isinstance(window, bool) or window < 0):
        raise ValidationError("dedup_window_s must be a non-negative number of seconds")
    labels = body.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValidationError("labels must be an object")
    policy = body.get("escalation_policy")
    if policy is not None and (not isinstance(policy, str) or not policy):
        raise ValidationError("escalation_policy must be a policy id")
    resolve_when = body.get("resolve_when")
    if resolve_when is not None:
        resolve_when = _match_spec(resolve_when, source, "resolve_when")
        if not resolve_when:
            raise ValidationError("resolve_when must match at least one field")
    resolve_by = body.get("resolve_by", RESOLVE_BY.get(source, []))
    if not isinstance(resolve_by, list) or not all(isinstance(f, str) and _field_ok(f, source) for f in resolve_by):
        raise ValidationError(f"resolve_by must be a list of fields of {source} records")
    return AlertRule(rid, tenant, severity, source, match, tuple(channels), title, text, fallback,
                     float(window) if window is not None else None, bool(body.get("enabled", True)),
                     {str(k): str(v) for k, v in labels.items()}, policy, resolve_when,
                     tuple(resolve_by))


def _match_spec(raw: object, source: str, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(raw, dict):
        raise ValidationError(f"{where} must be an object of field -> value or [values]")
    spec: dict[str, tuple[str, ...]] = {}
    for key, values in raw.items():
        if not _field_ok(key, source):
            raise ValidationError(f"{where} field {key!r} does not exist on {source} records")
        values = values if isinstance(values, list) else [values]
        if not values or not all(isinstance(v, (str, int, float)) for v in values):
            raise ValidationError(f"{where}.{key} must be a value or a non-empty list of values")
        spec[key] = tuple(str(v) for v in values)
    return spec


def flatten(record: dict) -> dict[str, str]:
    """The view rules match and templates render: fields, `attributes.X`, and `ts` (ISO)."""
    flat = {k: "" if v is None else str(v) for k, v in record.items()
            if not isinstance(v, (dict, list, bytes))}
    for k, v in (record.get("attributes") or {}).items():
        flat[f"attributes.{k}"] = str(v)
    ts = record.get("ts_ms") or record.get("end_ms") or record.get("updated_ms")
    if isinstance(ts, int):
        flat.setdefault("ts_ms", str(ts))
        flat["ts"] = datetime.fromtimestamp(ts / 1000, timezone.utc).isoformat().replace("+00:00", "Z")
    return flat


def matches(rule: AlertRule, source: str, record: dict, flat: dict[str, str] | None = None) -> bool:
    if not rule.enabled or rule.source not in (source, "any"):
        return False
    if record.get("tenant_id") != rule.tenant_id:
        return False
    flat = flat if flat is not None else flatten(record)
    return all(flat.get(k) in values for k, values in rule.match.items())


def resolves(rule: AlertRule, source: str, record: dict, flat: dict[str, str]) -> bool:
    """Whether `record` resolves this rule's open alerts (see `resolve_key`)."""
    if rule.resolve_when is None or not rule.enabled or rule.source not in (source, "any"):
        return False
    return record.get("tenant_id") == rule.tenant_id and all(
        flat.get(k) in values for k, values in rule.resolve_when.items())


def resolve_key(rule: AlertRule, flat: dict[str, str]) -> str:
    """The same for an alert and the record that resolves it: the rule and its resolve_by values."""
    return hashlib.sha256("\x1f".join([rule.rule_id, *(flat.get(f, "") for f in rule.resolve_by)])
                          .encode()).hexdigest()[:32]


class _FlatFormatter(string.Formatter):
    """`{attributes.speed}` is one key of the flat view, not attribute access."""

    def get_field(self, field_name, args, kwargs):
        return kwargs.get(field_name, ""), field_name


def render(template: str, flat: dict[str, str]) -> str:
    return _FlatFormatter().vformat(template, (), flat)
