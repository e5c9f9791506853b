"""Typed Faust records of the public topics, field for field the current Avro schemas.

Enums arrive as their symbol strings; a field with an Avro default has the same default here
(`tests/unit/test_downstream_records.py` holds each record to its `.avsc`, so a schema change
that adds a field fails there until the record gains it too). Records carry no Faust metadata
(`include_metadata=False`): the Avro schema, not a class name in the payload, is the contract.
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional

import faust


class PublicRecord(faust.Record, abstract=True, include_metadata=False):
    def __post_init__(self) -> None:
        # a class-level `= {}` default is one shared object: give each record its own
        for name in self._options.fields:
            value = getattr(self, name)
            if isinstance(value, (dict, list)) and value is self._options.defaults.get(name):
                setattr(self, name, copy.copy(value))


class GeofenceEvent(PublicRecord):
    """geo.geofence-events, keyed by `tenant/geofence_id`. `event_id` is deterministic:
    the same transition always has the same id, so it is the de-duplication key."""

    event_id: str
    event_type: str  # ENTER | EXIT | DWELL
    entity_id: str
    geofence_id: str
    geofence_version: int
    tenant_id: str
    lon: float
    lat: float
    ts_ms: int
    source: str
    reason: Optional[str] = None
    produced_ms: Optional[int] = None
    attributes: Dict[str, str] = {}


class CepMatch(PublicRecord):
    """geo.cep-matches; `match_id` is deterministic."""

    match_id: str
    pattern_id: str
    pattern_version: int
    tenant_id: str
    key: str
    severity: str
    event_ids: List[str]
    start_ms: int
    end_ms: int
    detail: Dict[str, str] = {}


class AlertStatus(PublicRecord):
    """alerts.status (compacted, keyed by alert id): the latest status of each alert."""

    alert_id: str
    tenant_id: str
    status: str  # PENDING | SENT | PARTIALLY_SENT | FAILED | DEAD_LETTERED | ...
    channels: Dict[str, str] = {}
    attempts: Dict[str, int] = {}
    last_errors: Dict[str, str] = {}
    fallback_of: Dict[str, str] = {}
    reason: Optional[str] = None
    rule_id: str = ""
    severity: str = "info"
    title: str = ""
    created_ms: int = 0
    delivered_ms: Optional[int] = None
    delivered_by: Dict[str, str] = {}
    updated_ms: int = 0  # required in Avro; a Faust field with a default cannot precede one without
    escalation_policy: Optional[str] = None
    escalation_level: int = 0
    next_escalation_ms: Optional[int] = None
    acknowledged_ms: Optional[int] = None
    acknowledged_by: Optional[str] = None
    resolved_ms: Optional[int] = None
    resolved_by: Optional[str] = None
    resolution: Dict[str, str] = {}
    body: str = ""
    labels: Dict[str, str] = {}
    repeats: int = 0  # suppressed repeats of the alert (never a new state of it)
    last_repeat_ms: Optional[int] = None


class JobStatus(PublicRecord):
    """jobs.status (compacted, keyed by job id)."""

    job_id: str
    tenant_id: str
    process_id: str
    status: str  # accepted | running | successful | failed | dismissed
    progress: int = 0
    message: Optional[str] = None
    tier: Optional[str] = None
    attempt: int = 0
    created_ms: int = 0  # required in Avro (see AlertStatus.updated_ms)
    started_ms: Optional[int] = None
    finished_ms: Optional[int] = None
    updated_ms: int = 0
    idempotency_key: str = ""
    priority: int = 5
    idempotency_header: Optional[str] = None


RECORDS = {"GeofenceEvent": GeofenceEvent, "CepMatch": CepMatch, "AlertStatus": AlertStatus,
           "JobStatus": JobStatus}
