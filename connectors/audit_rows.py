"""The audit trail's pure core: a decoded record -> one row, and the partition arithmetic. Pure.

No I/O here (tests/unit/test_audit_rows.py walks the imports): the sink and the API are thin
shells around these functions, so the mapping is tested in milliseconds.

Ids are deterministic, so re-reading a record (after a crash, a rebalance, a replay) maps it
to the same `(id, ts)` primary key and the database drops the repeat:
- geofence events and CEP matches carry their own deterministic ids (`event_id`, `match_id`);
- a status change is identified by what changed: `alert_id:status:updated_ms` (or
  `job_id:status:attempt:progress:updated_ms`) plus a digest of the whole record, because two
  different changes can share a millisecond (a second channel's outcome folded into the
  same status) and must both be kept.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from geoflux.errors import ValidationError

# logical topic -> (kind, Avro schema); the sink reads exactly these
SOURCES: dict[str, tuple[str, str]] = {
    "geo.geofence-events": ("geofence_event", "GeofenceEvent"),
    "geo.cep-matches": ("cep_match", "CepMatch"),
    "alerts.status": ("alert_status", "AlertStatus"),
    "jobs.status": ("job_status", "JobStatus"),
}
KINDS = frozenset(kind for kind, _ in SOURCES.values())
# CEP pattern kinds whose state (and match key) is per geofence (streams/cep/patterns.py)
_GEOFENCE_KEYED_CEP = {"comovement", "aggregate", "join", "dwell_outlier", "rate_outlier"}
# Python's datetime range, which is narrower than PostgreSQL's: a record outside it is corrupt
_MAX_MS = 253_402_300_799_999
_PARTITION_SUFFIX = re.compile(r"_p(\d{8})$")


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: str
    kind: str
    tenant_id: str | None
    entity_id: str | None
    geofence_id: str | None
    type: str | None
    ts: datetime
    lon: float | None
    lat: float | None
    payload: str  # canonical JSON of the decoded record
    src_topic: str
    src_partition: int
    src_offset: int

    @property
    def day(self) -> date:
        return self.ts.date()


def ms_to_datetime(ms: int) -> datetime:
    if not isinstance(ms, int) or not 0 <= ms <= _MAX_MS:
        raise ValidationError(f"record time {ms!r} ms is outside 1970..9999")
    return datetime.fromtimestamp(ms // 1000, timezone.utc) + timedelta(milliseconds=ms % 1000)


def canonical_json(record: dict) -> str:
    # bytes fields (none today) would not serialise; str() keeps the row rather than failing
    return json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _point(rec: dict) -> tuple[float | None, float | None]:
    lon, lat = rec.get("lon"), rec.get("lat")
    if isinstance(lon, (int, float)) and isinstance(lat, (int, float)) \
            and -180 <= lon <= 180 and -90 <= lat <= 90:
        return float(lon), float(lat)
    return None, None  # no position (or an impossible one): the row keeps no geometry


def _cep_subjects(rec: dict) -> tuple[str | None, str | None]:
    """(entity_id, geofence_id) of a match, from its key: `entity`, `geofence` or `a|b`."""
    key, detail = rec["key"], rec.get("detail") or {}
    head, _, tail = key.partition("|")
    if detail.get("kind") in _GEOFENCE_KEYED_CEP:
        return detail.get("entity_id") or (tail or None), detail.get("geofence_id") or head
    return detail.get("entity_id") or head, detail.get("geofence_id") or (tail or None)


def to_row(kind: str, rec: dict, src_topic: str, src_partition: int, src_offset: int) -> AuditRow:
    """One decoded record -> its audit row; ValidationError when it cannot be one."""
    try:
        payload = canonical_json(rec)
        src = (src_topic, src_partition, src_offset)
        if kind == "geofence_event":
            lon, lat = _point(rec)
            return AuditRow(rec["event_id"], kind, rec["tenant_id"], rec["entity_id"],
                            rec["geofence_id"], rec["event_type"], ms_to_datetime(rec["ts_ms"]),
                            lon, lat, payload, *src)
        if kind == "cep_match":
            entity, fence = _cep_subjects(rec)
            return AuditRow(rec["match_id"], kind, rec["tenant_id"], entity, fence,
                            rec["pattern_id"], ms_to_datetime(rec["end_ms"]), None, None,
                            payload, *src)
        if kind == "alert_status":
            rid = f"{rec['alert_id']}:{rec['status']}:{rec['updated_ms']}:{_digest(payload)}"
            return AuditRow(rid, kind, rec["tenant_id"], None, None, rec["status"],
                            ms_to_datetime(rec["updated_ms"]), None, None, payload, *src)
        if kind == "job_status":
            rid = (f"{rec['job_id']}:{rec['status']}:{rec['attempt']}:{rec['progress']}:"
                   f"{rec['updated_ms']}:{_digest(payload)}")
            return AuditRow(rid, kind, rec["tenant_id"], None, None, rec["status"],
                            ms_to_datetime(rec["updated_ms"]), None, None, payload, *src)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValidationError(f"{kind} record lacks a field the audit row needs: {exc!r}") from exc
    raise ValidationError(f"unknown audit kind {kind!r}")


# -- partitions -------------------------------------------------------------------------------
def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[str, str]:
    """[day, day + 1) in UTC, as literals that do not depend on the session's TimeZone."""
    return f"{day.isoformat()} 00:00:00+00", f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"


def partition_day(table: str, name: str) -> date | None:
    """The day of one of our partitions; None for anything else (left alone by retention)."""
    if not name.startswith(table + "_p"):
        return None
    m = _PARTITION_SUFFIX.search(name)
    if not m or len(name) != len(table) + 10:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def partitions_before(table: str, names: list[str], cutoff: date) -> list[str]:
    """Partitions whose whole day lies before `cutoff` (rows at or after it are kept)."""
    return sorted(n for n in names if (d := partition_day(table, n)) is not None and d < cutoff)


def backoff(schedule: tuple[float, ...], attempt: int) -> float:
    """The wait before retry `attempt` (1-based); the schedule's last value repeats."""
    return schedule[min(max(attempt, 1), len(schedule)) - 1] if schedule else 1.0


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """A validated read of the audit table (services/api/routes_audit.py builds it from a URL)."""

    tenant_id: str | None = None  # None: every tenant (an operator's query)
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive
    entity_id: str | None = None
    geofence_id: str | None = None
    kind: str | None = None
    type: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # minlon, minlat, maxlon, maxlat
    limit: int = 100
    offset: int = 0
