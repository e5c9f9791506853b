"""Noise control: fingerprints, de-duplication windows, silences and rate limits. Pure.

Every decision is (allowed, reason): a suppressed alert is recorded with the reason, never
dropped. State is per tenant and small: the last time each fingerprint was let through (kept
only while its window lasts) and a counter per severity for the current hour.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from geoflux.errors import ValidationError

DEFAULT_DEDUP_S = {"critical": 300, "high": 600, "warning": 900, "info": 1800}
DEFAULT_RATE_PER_HOUR = {"critical": 20, "high": 10, "warning": 5, "info": 3}
HOUR_MS = 3_600_000


def fingerprint(rule_id: str, labels: dict[str, str]) -> str:
    """Stable over label order: the same rule and labels are the same alert."""
    raw = rule_id + "\x1e" + "\x1e".join(f"{k}\x1f{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    value: str
    regex: bool = False
    negate: bool = False

    def test(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = re.fullmatch(self.value, actual) is not None if self.regex else actual == self.value
        return hit != self.negate


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: str
    tenant_id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    comment: str = ""
    created_by: str = ""

    def active(self, now_ms: int) -> bool:
        return self.starts_ms <= now_ms < self.ends_ms

    def silences(self, labels: dict[str, str], now_ms: int) -> bool:
        return self.active(now_ms) and all(m.test(labels) for m in self.matchers)

    def to_json(self) -> dict:
        return {"silence_id": self.silence_id, "tenant_id": self.tenant_id,
                "matchers": [{"name": m.name, "value": m.value, "regex": m.regex,
                              "negate": m.negate} for m in self.matchers],
                "starts_ms": self.starts_ms, "ends_ms": self.ends_ms, "comment": self.comment,
                "created_by": self.created_by}


def parse_silence(body: object, silence_id: str, now_ms: int) -> Silence:
    if not isinstance(body, dict):
        raise ValidationError("a silence must be a JSON object")
    tenant = body.get("tenant_id")
    if not isinstance(tenant, str) or not tenant:
        raise ValidationError("tenant_id is required")
    raw = body.get("matchers")
    if not isinstance(raw, list) or not raw:
        raise ValidationError("matchers must be a non-empty list of {name, value[, regex, negate]}")
    matchers = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
            raise ValidationError(f"matchers[{i}] needs string name and value")
        if m.get("regex"):
            try:
                re.compile(m["value"])
            except re.error as exc:
                raise ValidationError(f"matchers[{i}].value is not a valid regex: {exc}") from None
        matchers.append(Matcher(m["name"], m["value"], bool(m.get("regex")), bool(m.get("negate"))))
    starts = body.get("starts_ms", now_ms)
    ends = body.get("ends_ms")
    if not isinstance(starts, int) or not isinstance(ends, int) or ends <= starts:
        raise ValidationError("ends_ms (epoch ms) is required and must be after starts_ms")
    return Silence(silence_id, tenant, tuple(matchers), starts, ends,
                   str(body.get("comment", "")), str(body.get("created_by", "")))


@dataclass(slots=True)
class TenantNoiseState:
    held_until: dict[str, int] = field(default_factory=dict)  # fingerprint -> window end, ms
    hour: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # severity -> alerts this hour
    tenant_id: str = ""
    open: dict[str, list[str]] = field(default_factory=dict)  # resolve key -> open alert ids


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str | None = None


@dataclass(slots=True)
class Hold:
    """One fingerprint's de-duplication window, kept apart from its tenant's state: a tenant
    holds every fingerprint it let through within the window (300,000 at 1,000 critical
    alerts/s), too many to rewrite as one record on every change."""
    tenant_id: str
    fp: str
    until_ms: int


def decide(state: TenantNoiseState, *, fp: str, severity: str, labels: dict[str, str],
           silences: list[Silence], now_ms: int, dedup_window_s: float | None = None,
           dedup_defaults: dict[str, int] | None = None,
           rate_limits: dict[str, int] | None = None,
           holds: dict[str, int] | None = None) -> Decision:
    """Silence, then de-duplication, then the hourly rate limit; mutates `state` if allowed.
    `holds` (fingerprint -> end of its window) is where windows are looked up and recorded:
    the tenant's own `held_until` unless the caller keeps them elsewhere (the gate passes
    the one `Hold` of this fingerprint, so no call visits the tenant's other windows)."""
    for s in silences:
        if s.silences(labels, now_ms):
            return Decision(False, f"silenced by {s.silence_id}")
    window_ms = int(1000 * (dedup_window_s if dedup_window_s is not None
                            else (dedup_defaults or DEFAULT_DEDUP_S).get(severity, 1800)))
    if holds is None:
        # forget fingerprints whose windows are over, so the state stays bounded
        state.held_until = {k: v for k, v in state.held_until.items() if v > now_ms}
        holds = state.held_until
    until = holds.get(fp)
    if until is not None and until <= now_ms:  # its window is over
        del holds[fp]
        until = None
    if until is not None:
        return Decision(False, f"duplicate: fingerprint {fp} is held for another "
                               f"{(until - now_ms) / 1000:.0f} s of its de-duplication window")
    hour = now_ms // HOUR_MS
    if hour != state.hour:
        state.hour, state.counts = hour, {}
    limit = (rate_limits or DEFAULT_RATE_PER_HOUR).get(severity)
    if limit is not None and state.counts.get(severity, 0) >= limit:
        return Decision(False, f"rate limit: {limit} {severity} alerts per hour reached")
    state.counts[severity] = state.counts.get(severity, 0) + 1
    if window_ms > 0:
        holds[fp] = now_ms + window_ms
    return Decision(True)
