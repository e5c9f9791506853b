"""CEP pattern definitions: parsed and validated from JSON. Pure.

    {"pattern_id": "depot-then-port", "tenant_id": "acme", "severity": "high",
     "kind": "sequence", "within_s": 1800, "overlap": "skip_past_last",
     "steps": [{"event_type": "ENTER", "geofence_id": "depot"},
               {"event_type": "ENTER", "geofence_id": "port"}],
     "not_between": [{"event_type": "ENTER", "geofence_id": "checkpoint"}]}

Kinds (one class each in `streams.cep.kinds`) and their parameters:
- sequence: steps (2+), within_s, optional not_between — per entity.
- absence: trigger, expected, within_s — "ENTER A and no ENTER B within T" (route
  deviation); with expected = EXIT of the trigger's fence it is "dwell over a threshold".
- track_gap: within_s — no location update for T, per entity.
- count: event (type, geofence optional), at_least, within_s, per: entity | geofence.
- time_of_day: geofence_id, from_hour, to_hour (UTC) — inside G between the hours.
- comovement: geofence_id (optional: any), at_least entities, within_s — convoy.
- aggregate: window {type: tumbling|hopping|session, size_s, hop_s (hopping), gap_s
  (session)}, geofence_id (optional: every fence of the tenant) — entries, exits, dwells and
  occupancy per geofence and window, closed on event time.
- join: left, right (event_type + entity_prefix / entity_glob / attributes), within_s,
  geofence_id (optional), max_distance_m (optional) — two different entities at one fence.
- speed: max_speed_kmh, min_distance_m (default 100) — per entity, from location updates.
- dwell_outlier: z (4), min_samples (30), min_ratio (2), direction long|short|both,
  geofence_id (optional) — a dwell far outside the fence's own history.
- rate_outlier: window_s, z (4), min_windows (12), min_count (5), baseline_windows (24),
  geofence_id (optional) — entries per window far above the fence's rolling baseline.
(`streams/cep/kinds/join.py`, `speed.py` and `outliers.py` explain those four and their guards against false positives.)

Every kind takes `lateness_s` (0-86400): how far out of event-time order an event may arrive
and still be applied in order. Default 5 s (covers the re-key's interleaving of an entity's
events from several partitions; a match is held back that long), 0 for aggregates (a window
closes at its end). And every kind takes an optional `alert`: {channels, fallback_channel,
title, body, dedup_window_s} — the alert its matches raise, as rule `cep-<pattern_id>`.

Editing a pattern while events flow. A pattern's `shape` is everything that decides what
matches: its kind, the kind's parameters, `lateness_s` and `overlap` (as parsed: writing a
default out does not change it). An edit that keeps the shape — `severity`, `alert`, or
`description` — keeps every partial match, pending timer, window and baseline: matches
completed after the edit carry the new version and severity, and keep the match ids they
would have had. An edit that changes the shape (steps, window, within_s, thresholds,
lateness, ...) restarts the pattern's state at every key, as a new pattern would start: a
half-finished sequence under the old steps cannot be finished under the new ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from geoflux.errors import ValidationError
from streams.alerting.rules import AlertRule, parse_rule
from streams.cep.kinds import KINDS, Kind
from streams.cep.specs import number
from streams.config_validation import object_id_and_tenant

SEVERITIES = ("critical", "high", "warning", "info")
DEFAULT_LATENESS_S = 5


@dataclass(frozen=True, slots=True)
class Pattern:
    pattern_id: str
    tenant_id: str
    severity: str
    kind: str
    params: Any  # the kind's own frozen dataclass
    lateness_ms: int
    overlap: str = "skip_past_last"
    version: int = 1
    shape: str = ""
    body: dict = field(default_factory=dict, compare=False)
    impl: Kind = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    @property
    def keyed_by(self) -> str:
        """Where its state lives: per entity, or per geofence."""
        return self.impl.keyed_by(self.params)

    def to_json(self) -> dict:
        return dict(self.body, pattern_id=self.pattern_id)


def shape_of(kind: str, params: Any, lateness_ms: int, overlap: str) -> str:
    """Fingerprint of what decides matches (the parsed parameters' repr is deterministic:
    frozen dataclasses of strings, numbers and tuples)."""
    return hashlib.sha256(repr((kind, params, lateness_ms, overlap)).encode()).hexdigest()[:12]


def parse_pattern(body: object, pattern_id: str | None = None, version: int = 1) -> Pattern:
    body, pid, tenant = object_id_and_tenant(body, "pattern", "pattern_id", pattern_id)
    if body.get("severity") not in SEVERITIES:
        raise ValidationError(f"severity must be one of {', '.join(SEVERITIES)}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    impl = KINDS[kind]
    overlap = body.get("overlap", "skip_past_last")
    if overlap not in ("skip_past_last", "allow"):
        raise ValidationError("overlap must be skip_past_last or allow")
    params = impl.parse(body)
    late = number(body, "lateness_s", 0, 86_400, default=impl.default_lateness_s, lo_open=False)
    lateness_ms = int(late * 1000)
    overlap = overlap if impl.overlaps else "skip_past_last"
    doc = {**body, "pattern_id": pid}
    if body.get("alert") is not None:
        alert_rule(doc, tenant)  # validated now, so a bad alert is a 422, not a silent no-op
    return Pattern(pid, tenant, body["severity"], kind, params, lateness_ms, overlap, version,
                   shape_of(kind, params, lateness_ms, overlap), doc, impl)


def alert_rule(doc: dict, tenant: str) -> AlertRule:
    """The rule behind a pattern's `alert` block: its matches, at its severity."""
    spec = doc["alert"]
    if not isinstance(spec, dict):
        raise ValidationError("alert must be an object: {channels, fallback_channel, title, body}")
    allowed = {"channels", "fallback_channel", "title", "body", "dedup_window_s"}
    if set(spec) - allowed:
        raise ValidationError(f"alert: unknown field(s) {sorted(set(spec) - allowed)}")
    pid = doc["pattern_id"]
    try:
        return parse_rule({"title": "{pattern_id} matched for {key}", **spec,
                           "rule_id": f"cep-{pid}", "tenant_id": tenant, "severity": doc["severity"],
                           "source": "cep", "match": {"pattern_id": [pid]}})
    except ValidationError as exc:
        raise ValidationError(f"alert: {exc}") from None


def pattern_alert_rule(pattern: Pattern) -> AlertRule | None:
    return alert_rule(pattern.body, pattern.tenant_id) if pattern.body.get("alert") is not None else None
