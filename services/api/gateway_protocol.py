"""The gateway's protocol: cursors, subscription filters, the flow-control window and the
per-subscriber rate limit. Pure.

A cursor is the next offset to deliver for every partition of `geo.geofence-events`
("v1:0=15,1=7,2=0"). Messages go out over one ordered connection, so a cursor carried by
message m says: everything before these offsets was either sent before m or filtered out.
Acknowledging m's cursor is therefore safe, and resuming from it re-sends at most what came
after it (at least once; the event id lets a client drop repeats). Per-partition order is
per-geofence order, because the topic is keyed by geofence.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoflux.errors import ValidationError

CURSOR_VERSION = "v1"
FILTER_FIELDS = ("tenant_id", "entity_id", "geofence_id", "event_type")


def encode_cursor(positions: dict[int, int]) -> str:
    return CURSOR_VERSION + ":" + ",".join(f"{p}={o}" for p, o in sorted(positions.items()))


def decode_cursor(cursor: object) -> dict[int, int]:
    if not isinstance(cursor, str) or not cursor.startswith(CURSOR_VERSION + ":"):
        raise ValidationError(f"cursor must be a string from this gateway ({CURSOR_VERSION}:...)")
    positions = {}
    body = cursor[len(CURSOR_VERSION) + 1:]
    for part in filter(None, body.split(",")):
        p, _, o = part.partition("=")
        if not (p.isdigit() and o.isdigit()):
            raise ValidationError(f"cursor part {part!r} is not partition=offset")
        positions[int(p)] = int(o)
    return positions


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client receives: every field given must match (an absent field matches all)."""

    tenant_id: str | None = None
    entity_id: str | None = None
    geofence_id: str | None = None
    event_type: str | None = None

    def matches(self, event: dict) -> bool:
        return all(want is None or event.get(name) == want
                   for name, want in ((f, getattr(self, f)) for f in FILTER_FIELDS))


def parse_subscription(raw: object, key_tenant: str | None) -> Subscription:
    """`key_tenant` None is an operator key (may subscribe to everything); a tenant key is
    confined to its own tenant whatever the filter says, and asking for another is refused."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValidationError("filter must be an object of " + ", ".join(FILTER_FIELDS))
    unknown = set(raw) - set(FILTER_FIELDS)
    if unknown:
        raise ValidationError(f"filter: unknown field(s) {sorted(unknown)}")
    if not all(v is None or (isinstance(v, str) and v) for v in raw.values()):
        raise ValidationError("filter values must be non-empty strings")
    tenant = raw.get("tenant_id")
    if key_tenant is not None:
        if tenant not in (None, key_tenant):
            raise PermissionError(f"this API key may not subscribe to tenant {tenant!r}")
        tenant = key_tenant
    return Subscription(tenant, raw.get("entity_id"), raw.get("geofence_id"), raw.get("event_type"))


class FlowWindow:
    """At most `size` messages sent and not yet acknowledged. A client that keeps the window
    full for `stall_s` is too slow: it is disconnected, so it never holds anything else up."""

    def __init__(self, size: int, stall_s: float) -> None:
        self.size, self.stall_s = size, stall_s
        self.sent = self.acked = 0
        self.full_since: float | None = None

    @property
    def open(self) -> bool:
        return self.sent - self.acked < self.size

    def on_sent(self, now: float) -> None:
        self.sent += 1
        if not self.open and self.full_since is None:
            self.full_since = now

    def on_ack(self, seq: int) -> None:
        if seq > self.sent:
            raise ValidationError(f"ack of message {seq}, but only {self.sent} were sent")
        self.acked = max(self.acked, seq)
        if self.open:
            self.full_since = None

    def stalled(self, now: float) -> bool:
        return self.full_since is not None and now - self.full_since >= self.stall_s


class TokenBucket:
    """`rate` messages per second with bursts of `burst`; `wait_s` says how long until one."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, now: float) -> float:
        """Takes a token if there is one (returns 0), else returns the seconds to wait."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate
