"""The topic catalogue: every topic geoflux owns, in one place.

Partition counts and replication come from `KafkaSettings`; what is compacted, what is kept
how long and which Avro schema is the value's contract are fixed here. Topics that are joined
by key (locations and the evaluator's state) share the partition count by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from geoflux.settings import KafkaSettings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    value_schema: str | None
    compacted: bool = False
    retention_ms: int | None = None  # None: broker default (compacted topics: forever)
    key: str = ""
    doc: str = ""
    partitions: int | None = None  # None: KafkaSettings.partitions
    extra: dict[str, str] = field(default_factory=dict)

    def config(self, settings: KafkaSettings) -> dict[str, str]:
        cfg = {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "min.insync.replicas": str(settings.min_insync_replicas),
        }
        if self.compacted:
            cfg["retention.ms"] = "-1"
        elif self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        cfg.update(self.extra)
        return cfg


def _spec(name: str, schema: str | None, **kw) -> TopicSpec:
    return TopicSpec(name=name, value_schema=schema, **kw)


def catalogue(settings: KafkaSettings | None = None) -> dict[str, TopicSpec]:
    """Logical name -> spec, with `topic_prefix` applied to the physical names."""
    s = settings or KafkaSettings()
    loc_ms = s.location_retention_days * DAY_MS
    evt_ms = s.event_retention_days * DAY_MS
    specs = [
        _spec("geo.locations", "LocationUpdate", retention_ms=loc_ms, key="entity_id",
              doc="position reports; per-entity order"),
        _spec("geo.locations.dlq", "DlqRecord", retention_ms=evt_ms, key="entity_id",
              doc="late, duplicate-conflicting or undecodable location updates, with the reason"),
        _spec("geo.entities", "EntityAttributes", compacted=True, key="tenant/entity_id",
              doc="entity attributes (class, owner...); the evaluator joins them onto its events"),
        _spec("geo.geofences", "Geofence", compacted=True, key="geofence_id",
              doc="geofence registry; tombstone deletes"),
        _spec("geo.geofence-events", "GeofenceEvent", retention_ms=evt_ms, key="geofence_id",
              doc="ENTER/EXIT/DWELL, per-geofence FIFO"),
        _spec("geo.evaluations", "EvaluationResult", retention_ms=DAY_MS, key="request_id",
              doc="answers to REST evaluate requests, written in the evaluator's transaction"),
        _spec("geo.evaluator-state", "EntityState", compacted=True, key="entity_id",
              doc="evaluator changelog, co-partitioned with geo.locations"),
        _spec("geo.cep-patterns", "ConfigRecord", compacted=True, key="pattern_id",
              doc="CEP pattern definitions (JSON body, validated on write)"),
        _spec("geo.cep-input", "GeofenceEvent", retention_ms=evt_ms, key="entity_id",
              doc="geofence events re-keyed by entity, co-partitioned with geo.locations"),
        _spec("geo.cep-state", "CepState", compacted=True, key="entity_id",
              doc="per-entity CEP changelog, co-partitioned with geo.cep-input"),
        _spec("geo.cep-geofence-state", "CepState", compacted=True, key="geofence_id",
              doc="per-geofence CEP changelog, co-partitioned with geo.geofence-events"),
        _spec("geo.cep-matches", "CepMatch", retention_ms=evt_ms, key="key"),
        _spec("geo.cep.dlq", "DlqRecord", retention_ms=evt_ms, key="entity_id or geofence_id",
              doc="geofence events that arrived later than a pattern's allowed lateness"),
        _spec("geo.cep-aggregates", "CepAggregate", compacted=True, key="pattern|geofence|start",
              doc="windowed aggregates per geofence: updated while open, final once closed"),
        _spec("jobs.requests", "JobRequest", retention_ms=7 * DAY_MS, key="job_id"),
        _spec("jobs.status", "JobStatus", compacted=True, key="job_id"),
        _spec("jobs.results", "JobResult", retention_ms=evt_ms, key="job_id"),
        _spec("jobs.retry", "JobRequest", retention_ms=7 * DAY_MS, key="job_id"),
        _spec("jobs.dlq", "DlqRecord", retention_ms=evt_ms, key="job_id"),
        _spec("jobs.control", "ConfigRecord", compacted=True, key="job_id",
              doc="dismissals: every job worker follows it and stops the job it runs"),
        _spec("jobs.batch", "BatchEvent", compacted=True, key="job_id",
              doc="AWS Batch runs: the submit (image) and state changes from SNS/EventBridge"),
        _spec("jobs.alert-state", "JobAlertState", compacted=True, key="job_id",
              doc="job-alert stage changelog (queued jobs, alerts raised), co-partitioned with jobs.status"),
        _spec("alerts.rules", "ConfigRecord", compacted=True, key="rule_id"),
        _spec("alerts.channels", "ConfigRecord", compacted=True, key="channel name",
              doc="channel endpoints and their settings (secrets: see docs)"),
        _spec("alerts.silences", "ConfigRecord", compacted=True, key="silence_id"),
        _spec("alerts.candidates", "Alert", retention_ms=7 * DAY_MS, key="tenant_id",
              doc="rule matches before noise control, keyed by tenant"),
        _spec("alerts.gate-state", "GateState", compacted=True, key="tenant_id",
              doc="noise-control changelog, co-partitioned with alerts.candidates"),
        _spec("alerts.alerts", "Alert", retention_ms=evt_ms, key="alert_id",
              doc="every alert, persisted before any delivery; suppressed ones with the reason"),
        _spec("alerts.outcomes", "DeliveryAttempt", retention_ms=evt_ms, key="alert_id"),
        _spec("alerts.deliveries", "DeliveryAttempt", retention_ms=7 * DAY_MS, key="alert_id"),
        _spec("alerts.retry", "DeliveryAttempt", retention_ms=7 * DAY_MS, key="alert_id"),
        _spec("alerts.dlq", "DlqRecord", retention_ms=evt_ms, key="delivery_id"),
        _spec("alerts.status", "AlertStatus", compacted=True, key="alert_id"),
        _spec("alerts.lifecycle", "AlertAction", retention_ms=evt_ms, key="alert_id",
              doc="acknowledgements and resolutions: API, CLI, PagerDuty/Opsgenie webhooks, the source"),
        _spec("alerts.escalations", "ConfigRecord", compacted=True, key="policy_id",
              doc="escalation policies per tenant and severity"),
        _spec("audit.dlq", "DlqRecord", retention_ms=evt_ms, key="original key",
              doc="records the audit sink could not decode or map, with the reason"),
        _spec("ops.gateway-cursors", "ConfigRecord", compacted=True, key="tenant/client_id",
              doc="the last cursor each gateway client acknowledged, so any gateway resumes it"),
        _spec("ops.dlq-redrives", "ConfigRecord", compacted=True, key="dlq_id",
              doc="which DLQ records a person redrove, when and by whom"),
    ]
    return {spec.name: _with_prefix(spec, s.topic_prefix) for spec in specs}


def _with_prefix(spec: TopicSpec, prefix: str) -> TopicSpec:
    if not prefix:
        return spec
    return TopicSpec(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__},
                        "name": prefix + spec.name})


def topic(logical: str, settings: KafkaSettings | None = None) -> str:
    """The physical name of a catalogue topic."""
    return catalogue(settings)[logical].name
