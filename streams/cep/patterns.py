"""CEP pattern definitions: parsed and validated from JSON. Pure.

    {"pattern_id": "depot-then-port", "tenant_id": "acme", "severity": "high",
     "kind": "sequence", "within_s": 1800, "overlap": "skip_past_last",
     "steps": [{"event_type": "ENTER", "geofence_id": "depot"},
               {"event_type": "ENTER", "geofence_id": "port"}],
     "not_between": [{"event_type": "ENTER", "geofence_id": "checkpoint"}]}

Kinds and their parameters:
- sequence: steps (2+), within_s, optional not_between — per entity.
- absence: trigger, expected, within_s — "ENTER A and no ENTER B within T" (route
  deviation); with expected = EXIT of the trigger's fence it is "dwell over a threshold".
- track_gap: within_s — no location update for T, per entity.
- count: event (type, geofence optional), at_least, within_s, per: entity | geofence.
- time_of_day: geofence_id, from_hour, to_hour (UTC) — inside G between the hours.
- comovement: geofence_id (optional: any), at_least entities, within_s — convoy.
- aggregate: window {type: tumbling|hopping|session, size_s, hop_s (hopping), gap_s
  (session)}, geofence_id (optional: every fence of the tenant), lateness_s — entries,
  exits, dwells and occupancy per geofence and window, closed on event time.

Every kind takes `lateness_s` (0-86400): how far out of event-time order an event may arrive
and still be applied in order. Default 5 s (covers the re-key's interleaving of an entity's
events from several partitions; a match is held back that long), 0 for aggregates (a window
closes at its end). And every kind takes an optional `alert`: {channels, fallback_channel,
title, body, dedup_window_s} — the alert its matches raise, as rule `cep-<pattern_id>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geoflux.errors import ValidationError
from streams.alerting.rules import AlertRule, parse_rule
from streams.config_validation import object_id_and_tenant

KINDS = ("sequence", "absence", "track_gap", "count", "time_of_day", "comovement", "aggregate")
SEVERITIES = ("critical", "high", "warning", "info")
EVENT_TYPES = ("ENTER", "EXIT", "DWELL")
MAX_WITHIN_S = 7 * 86_400
DEFAULT_LATENESS_S = 5


@dataclass(frozen=True, slots=True)
class EventSpec:
    event_type: str
    geofence_id: str | None = None  # None: any geofence

    def matches(self, ev: dict) -> bool:
        return ev["event_type"] == self.event_type and (
            self.geofence_id is None or ev["geofence_id"] == self.geofence_id)


@dataclass(frozen=True, slots=True)
class Pattern:
    pattern_id: str
    tenant_id: str
    severity: str
    kind: str
    within_ms: int
    overlap: str = "skip_past_last"
    steps: tuple[EventSpec, ...] = ()
    not_between: tuple[EventSpec, ...] = ()
    at_least: int = 0
    per: str = "entity"
    geofence_id: str | None = None
    from_hour: int = 0
    to_hour: int = 24
    window: str = ""
    size_ms: int = 0
    hop_ms: int = 0
    lateness_ms: int = 0
    version: int = 1
    body: dict = field(default_factory=dict, compare=False)

    @property
    def keyed_by(self) -> str:
        """Where its state lives: per entity, or per geofence."""
        if self.kind in ("comovement", "aggregate") or (self.kind == "count" and self.per == "geofence"):
            return "geofence"
        return "entity"

    def to_json(self) -> dict:
        return dict(self.body, pattern_id=self.pattern_id)


def _event(spec: object, where: str) -> EventSpec:
    if not isinstance(spec, dict) or spec.get("event_type") not in EVENT_TYPES:
        raise ValidationError(f"{where}: needs event_type one of {', '.join(EVENT_TYPES)}")
    gid = spec.get("geofence_id")
    if gid is not None and (not isinstance(gid, str) or not gid):
        raise ValidationError(f"{where}: geofence_id must be a non-empty string")
    return EventSpec(spec["event_type"], gid)


def _positive(body: dict, key: str, maximum: float) -> float:
    v = body.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= maximum:
        raise ValidationError(f"{key} must be a number in (0, {maximum:g}]")
    return float(v)


def parse_pattern(body: object, pattern_id: str | None = None, version: int = 1) -> Pattern:
    body, pid, tenant = object_id_and_tenant(body, "pattern", "pattern_id", pattern_id)
    if body.get("severity") not in SEVERITIES:
        raise ValidationError(f"severity must be one of {', '.join(SEVERITIES)}")
    kind = body.get("kind")
    if kind not in KINDS:
        raise ValidationError(f"kind must be one of {', '.join(KINDS)}")
    overlap = body.get("overlap", "skip_past_last")
    if overlap not in ("skip_past_last", "allow"):
        raise ValidationError("overlap must be skip_past_last or allow")
    kw: dict = {}
    if kind == "aggregate":
        kw["within_ms"] = 0
    elif kind != "time_of_day":
        kw["within_ms"] = int(_positive(body, "within_s", MAX_WITHIN_S) * 1000)
    else:
        kw["within_ms"] = 0
    if kind == "sequence":
        steps = body.get("steps")
        if not isinstance(steps, list) or len(steps) < 2:
            raise ValidationError("a sequence needs steps: a list of 2 or more events")
        kw["steps"] = tuple(_event(s, f"steps[{i}]") for i, s in enumerate(steps))
        nb = body.get("not_between") or []
        if not isinstance(nb, list):
            raise ValidationError("not_between must be a list of events")
        kw["not_between"] = tuple(_event(s, f"not_between[{i}]") for i, s in enumerate(nb))
    elif kind == "absence":
        kw["steps"] = (_event(body.get("trigger"), "trigger"), _event(body.get("expected"), "expected"))
    elif kind == "count":
        kw["steps"] = (_event(body.get("event"), "event"),)
        kw["at_least"] = int(_positive(body, "at_least", 10_000))
        kw["per"] = body.get("per", "entity")
        if kw["per"] not in ("entity", "geofence"):
            raise ValidationError("per must be entity or geofence")
    elif kind == "time_of_day":
        gid = body.get("geofence_id")
        if not isinstance(gid, str) or not gid:
            raise ValidationError("geofence_id is required")
        fh, th = body.get("from_hour"), body.get("to_hour")
        if not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 24 for h in (fh, th)) or fh == th:
            raise ValidationError("from_hour and to_hour must be different integers 0-24 (UTC)")
        kw.update(geofence_id=gid, from_hour=fh, to_hour=th)
    elif kind == "comovement":
        kw["at_least"] = int(_positive(body, "at_least", 10_000))
        if kw["at_least"] < 2:
            raise ValidationError("a convoy needs at_least 2 entities")
        gid = body.get("geofence_id")
        if gid is not None and not isinstance(gid, str):
            raise ValidationError("geofence_id must be a string")
        kw["geofence_id"] = gid
    elif kind == "aggregate":
        w = body.get("window")
        if not isinstance(w, dict) or w.get("type") not in ("tumbling", "hopping", "session"):
            raise ValidationError("window must be {type: tumbling | hopping | session, ...}")
        kw["window"] = w["type"]
        if w["type"] == "session":
            kw["size_ms"] = int(_positive(w, "gap_s", MAX_WITHIN_S) * 1000)
        else:
            kw["size_ms"] = int(_positive(w, "size_s", MAX_WITHIN_S) * 1000)
        if w["type"] == "hopping":
            kw["hop_ms"] = int(_positive(w, "hop_s", MAX_WITHIN_S) * 1000)
            if kw["hop_ms"] > kw["size_ms"] or kw["size_ms"] // kw["hop_ms"] > 100:
                raise ValidationError("hop_s must be at most size_s, and size_s / hop_s at most 100")
        gid = body.get("geofence_id")
        if gid is not None and not isinstance(gid, str):
            raise ValidationError("geofence_id must be a string")
        kw["geofence_id"] = gid
    late = body.get("lateness_s", 0 if kind == "aggregate" else DEFAULT_LATENESS_S)
    if not isinstance(late, (int, float)) or isinstance(late, bool) or not 0 <= late <= 86_400:
        raise ValidationError("lateness_s must be a number in [0, 86400]")
    kw["lateness_ms"] = int(late * 1000)
    doc = {**body, "pattern_id": pid}
    if body.get("alert") is not None:
        alert_rule(doc, tenant)  # validated now, so a bad alert is a 422, not a silent no-op
    return Pattern(pid, tenant, body["severity"], kind, overlap=overlap, version=version, body=doc, **kw)


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
