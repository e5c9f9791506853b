"""What every route of the HTTP API takes and answers: the table `services/api/openapi.py` turns
into the OpenAPI document. One `Op` per method and path; `crud()` for a ConfigStore resource.
Enumerations come from the modules that enforce them, so the document follows the code."""

from __future__ import annotations

from connectors.audit_rows import KINDS as AUDIT_KINDS
from connectors.channels.base import channel_kinds
from services.api.routes_alerts import STATUSES as ALERT_STATUSES
from services.api.openapi import (ANY_OBJ, BOOL, ID, INT, NUM, STR, Op, Param, arr, nullable, obj)
from streams.alerting.rules import SEVERITIES, SOURCES
from streams.cep.patterns import KINDS as CEP_KINDS

# -- shared pieces ----------------------------------------------------------------------------
LIMIT, OFFSET = Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}), \
    Param("offset", {"type": "integer", "minimum": 0})
TENANT = Param("tenant_id", ID, description="operators: one tenant; a tenant key: only its own (else 403)")
OBJECT_TENANT = Param("tenant_id", ID, description="ids are per tenant: whose object (operators, where "
                      "several tenants use the id: else 422); a tenant key always means its own")
BY_ID_ERRORS = (400, 401, 404, 422)
SEVERITY = {"enum": list(SEVERITIES)}
GEOMETRY = obj(["type", "coordinates"], type={"enum": ["Point", "LineString", "Polygon", "MultiPoint",
                                                        "MultiLineString", "MultiPolygon"]},
               coordinates={"type": "array"})
LINKS = arr(obj(["href", "rel"], href=STR, rel=STR, type=STR, title=STR))
ITEMS = obj(["items", "total"], items=arr(ANY_OBJ), total=INT)
DELETED = obj(["id", "version", "deleted"], id=STR, version=INT, deleted=BOOL)
WRITE_ERRORS = (400, 403, 404, 422)


def crud(base: str, what: str, tag: str, body: dict, id_field: str) -> list[Op]:
    """POST/GET on `base`, GET/PUT/DELETE on `base/{id}` (services/api/routes_config.py)."""
    out = obj([id_field, "tenant_id", "version", "updated_ms"], **{id_field: STR}, tenant_id=STR,
              version=INT, updated_ms=INT)
    listed = obj(["items", "total"], items=arr(out), total=INT)
    return [Op("POST", base, f"create a {what} (422: invalid or the id exists)", tag, {201: out},
               body, errors=WRITE_ERRORS),
            Op("GET", base, f"list {what}s", tag, {200: listed}, params=(TENANT,), errors=(400, 403)),
            Op("GET", base + "/{id}", f"one {what}", tag, {200: out}, params=(OBJECT_TENANT,),
               errors=BY_ID_ERRORS),
            Op("PUT", base + "/{id}", f"replace a {what} (a new version; ids are per tenant)", tag, {200: out},
               body, errors=WRITE_ERRORS),
            Op("DELETE", base + "/{id}", f"delete a {what}", tag, {200: DELETED}, params=(OBJECT_TENANT,),
               errors=BY_ID_ERRORS)]


# -- bodies -----------------------------------------------------------------------------------
ENTITY_ATTRIBUTES = obj(["entity_id", "tenant_id", "attributes", "version"], entity_id=STR, tenant_id=STR,
                        attributes={"type": "object", "additionalProperties": STR}, version=INT,
                        updated_ms=INT, deleted={"type": "boolean"})
FEATURE_IN = obj(["type", "geometry", "properties"], type={"const": "Feature"}, id=ID, geometry=GEOMETRY,
                 properties=obj(["name"], name=ID, tenant_id=ID, dwell_seconds=NUM, hysteresis_m=NUM,
                                radius_m=NUM))
FEATURE = obj(["type", "id", "geometry", "properties"], type={"const": "Feature"}, id=STR, geometry=GEOMETRY,
              properties=obj(["name", "tenant_id", "version"], name=STR, tenant_id=STR, version=INT))
LOCATION = obj(["entity_id", "lon", "lat", "timestamp"], entity_id={**ID, "maxLength": 200},
               lon={"type": "number", "minimum": -180, "maximum": 180},
               lat={"type": "number", "minimum": -90, "maximum": 90},
               timestamp={"anyOf": [STR, INT]}, tenant_id=ID, attributes=ANY_OBJ)
EVALUATED = obj(["entity_id", "timestamp", "outcome", "inside", "events"], entity_id=STR, timestamp=STR,
                outcome=STR, reason=nullable(STR), inside=arr(STR), events=arr(ANY_OBJ))
RULE = obj(["rule_id", "severity", "channels"], rule_id=ID, tenant_id=ID, severity=SEVERITY,
           source={"enum": list(SOURCES)}, match=ANY_OBJ, channels=arr(ID, minItems=1),
           fallback_channel=ID, title=ID, body=STR, dedup_window_s=NUM, labels=ANY_OBJ,
           escalation_policy=ID, enabled=BOOL)
CHANNEL = obj(["name", "kind"], name={"type": "string", "pattern": "^[A-Za-z0-9._-]{1,80}$"}, tenant_id=ID,
              kind={"enum": channel_kinds()}, settings=ANY_OBJ)
SILENCE = obj(["matchers", "ends_ms"], silence_id=ID, tenant_id=ID,
              matchers=arr(obj(["name", "value"], name=STR, value=STR, regex=BOOL, negate=BOOL), minItems=1),
              starts_ms=INT, ends_ms=INT, comment=STR, created_by=STR)
POLICY = obj(["policy_id", "levels"], policy_id=ID, tenant_id=ID, severities=arr(SEVERITY),
             levels=arr(obj(["delay_s", "channels"], delay_s=NUM, channels=arr(ID, minItems=1),
                            severity_override=SEVERITY), minItems=1))
PATTERN = obj(["pattern_id", "severity", "kind"], pattern_id=ID, tenant_id=ID, severity=SEVERITY,
              kind={"enum": list(CEP_KINDS)}, within_s=NUM, overlap={"enum": ["skip_past_last", "allow"]},
              steps=arr(ANY_OBJ), event=ANY_OBJ, at_least=INT, per={"enum": ["entity", "geofence"]},
              geofence_id=ID)
ALERT = obj(["alert_id", "tenant_id", "status", "severity"], alert_id=STR, tenant_id=STR,
            status={"enum": list(ALERT_STATUSES)}, severity=STR, channels=ANY_OBJ)
STATUS_INFO = obj(["jobID", "processID", "type", "status", "links"], jobID=STR, processID=STR,
                  type={"const": "process"}, status={"enum": ["accepted", "running", "successful",
                                                              "failed", "dismissed"]},
                  message=nullable(STR), progress=nullable(INT), links=LINKS)
EXECUTE = obj(["inputs"], inputs=ANY_OBJ, outputs=ANY_OBJ, response={"enum": ["document", "raw"]},
              priority={"type": "integer", "minimum": 0, "maximum": 9}, timeout_s=NUM,
              subscriber=obj(successUri=STR, inProgressUri=STR, failedUri=STR))
REPLAY = obj((), True, **{"from": {"anyOf": [STR, INT]}, "to": {"anyOf": [STR, INT]}},
             from_offsets=ANY_OBJ, to_offsets=ANY_OBJ, tenant_id=ID, margin_s=NUM,
             topic={"enum": ["geo.geofence-events", "geo.cep-matches"]}, geofence_id=ID, entity_id=ID,
             event_type={"enum": ["ENTER", "EXIT", "DWELL"]}, pattern_id=ID)
LANDING = obj(["title", "description", "links"], title=STR, description=STR, links=LINKS)
ACTION = obj(["action_id", "alert_id", "action"], action_id=STR, alert_id=STR, action=STR,
             previous_status=STR)

G, A, C, J, O = "geofences", "alerts", "cep", "processes (OGC)", "operations"
OPERATIONS: list[Op] = [
    Op("POST", "/api/v1/geofences", "create a geofence (422 with the reason)", G, {201: FEATURE},
       FEATURE_IN, errors=WRITE_ERRORS),
    Op("GET", "/api/v1/geofences", "list geofences, paged", G,
       {200: obj(["type", "features", "total"], type={"const": "FeatureCollection"}, features=arr(FEATURE),
                 total=INT, offset=INT, limit=INT, next=STR)}, params=(OFFSET, LIMIT, TENANT), errors=(400, 403)),
    Op("GET", "/api/v1/geofences/{id}", "one geofence", G, {200: FEATURE}, params=(OBJECT_TENANT,),
       errors=BY_ID_ERRORS),
    Op("GET", "/api/v1/geofences/{id}/occupants", "who is inside the geofence now (the evaluator's state)", G,
       {200: obj(["items", "total"], items=arr(obj(["entity_id", "since"], entity_id=STR, since=INT)),
                 total=INT, offset=INT, limit=INT, geofence_id=STR, tenant_id=STR)},
       params=(OFFSET, LIMIT, OBJECT_TENANT), errors=(400, 401, 404, 422, 503)),
    Op("PUT", "/api/v1/entities/{id}/attributes", "set an entity's attributes (joined onto its events)", G,
       {200: ENTITY_ATTRIBUTES}, obj(["attributes"], attributes={"type": "object", "maxProperties": 50,
                                                                 "additionalProperties": {"type": ["string", "number"]}}),
       params=(OBJECT_TENANT,), errors=(400, 401, 422, 503)),
    Op("GET", "/api/v1/entities/{id}/attributes", "an entity's attributes", G, {200: ENTITY_ATTRIBUTES},
       params=(OBJECT_TENANT,), errors=(401, 404, 422, 503)),
    Op("DELETE", "/api/v1/entities/{id}/attributes", "forget an entity's attributes", G, {200: DELETED},
       params=(OBJECT_TENANT,), errors=(401, 404, 422, 503)),
    Op("GET", "/api/v1/entities/{id}/geofences", "the geofences an entity is inside now", G,
       {200: obj(["items", "total"], items=arr(obj(["geofence_id", "since"], geofence_id=STR, since=INT)),
                 total=INT, entity_id=STR, tenant_id=STR)},
       params=(OBJECT_TENANT,), errors=(401, 422, 503)),
    Op("PUT", "/api/v1/geofences/{id}", "replace a geofence (a new version)", G, {200: FEATURE}, FEATURE_IN,
       errors=WRITE_ERRORS),
    Op("DELETE", "/api/v1/geofences/{id}", "delete a geofence", G, {200: DELETED}, params=(OBJECT_TENANT,),
       errors=BY_ID_ERRORS),
    Op("POST", "/api/v1/geoevent/evaluate", "evaluate one location through the stream", G, {200: EVALUATED},
       LOCATION, errors=(400, 403, 422, 503, 504)),
    Op("POST", "/api/v1/geoevent/evaluate/batch", "evaluate locations through the stream", G,
       {200: obj(["results"], results=arr(EVALUATED))}, obj(["locations"], locations=arr(LOCATION, minItems=1)),
       errors=(400, 403, 413, 422, 503, 504)),
    Op("GET", "/api/v1/entities", "latest position per entity (the console's map)", G, {200: ITEMS},
       params=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 10000}),
               Param("max_age_s", {"type": "number", "exclusiveMinimum": 0}), TENANT), errors=(400, 403)),
    *crud("/api/v1/alerts/rules", "rule", A, RULE, "rule_id"),
    *crud("/api/v1/alerts/channels", "channel (secrets masked)", A, CHANNEL, "name"),
    *crud("/api/v1/silences", "silence", A, SILENCE, "silence_id"),
    *crud("/api/v1/alerts/escalations", "escalation policy", A, POLICY, "policy_id"),
    Op("GET", "/api/v1/alerts", "alert statuses, newest first", A,
       {200: obj(["items", "total"], items=arr(ALERT), total=INT, offset=INT, limit=INT)},
       params=(OFFSET, LIMIT, Param("status", {"enum": list(ALERT_STATUSES)}), Param("severity"), TENANT),
       errors=(400, 403)),
    Op("GET", "/api/v1/alerts/{id}", "one alert: channels, attempts, escalation level", A, {200: ALERT}),
    Op("POST", "/api/v1/alerts/{id}/ack", "acknowledge (escalation stops)", A, {202: ACTION},
       obj(note=STR), body_required=False, errors=(400, 404, 422)),
    Op("POST", "/api/v1/alerts/{id}/resolve", "resolve (channels are told)", A, {202: ACTION},
       obj(note=STR), body_required=False, errors=(400, 404, 422)),
    Op("GET", "/api/v1/alerts/sla", "delivery SLA attainment per severity and channel", A,
       {200: obj(["window_s", "items"], window_s=NUM, items=arr(ANY_OBJ))},
       params=(Param("window_s", {"type": "number", "minimum": 60, "maximum": 604800}), TENANT),
       errors=(400, 403)),
    Op("POST", "/api/v1/webhooks/pagerduty", "acknowledgements from PagerDuty (X-PagerDuty-Signature)", A,
       {200: ANY_OBJ, 202: ACTION}, ANY_OBJ, security="signed", errors=(400, 401, 404),
       params=(Param("X-PagerDuty-Signature", where="header"),)),
    Op("POST", "/api/v1/webhooks/opsgenie", "acknowledgements from Opsgenie (X-Geoflux-Token)", A,
       {200: ANY_OBJ, 202: ACTION}, ANY_OBJ, security="signed", errors=(400, 401, 404),
       params=(Param("X-Geoflux-Token", where="header"),)),
    Op("POST", "/api/v1/webhooks/twilio/voice",
       "a voice call's keypress from Twilio (form-encoded, X-Twilio-Signature); answers TwiML", A,
       {200: ("text/xml", STR)}, None, body_required=False, security="signed", errors=(403, 404),
       params=(Param("alert_id"), Param("channel"), Param("delivery_id"),
               Param("X-Twilio-Signature", where="header"))),
    Op("GET", "/api/v1/dlq", "dead letters (operators)", O, {200: ITEMS},
       params=(Param("queue", {"enum": ["alerts", "jobs", "locations", "cep", "audit"]}),
               Param("all", {"enum": ["1", "true", "0", "false"]})), errors=(400, 403)),
    Op("GET", "/api/v1/dlq/{id}", "one dead letter with its reason (operators)", O, {200: ANY_OBJ},
       errors=(403, 404)),
    Op("POST", "/api/v1/dlq/{id}/redrive", "send a dead letter back to its topic (operators)", O,
       {202: ANY_OBJ}, errors=(400, 403, 404, 422)),
    Op("GET", "/api/v1/stack", "the parts of the `geoflux up` that started this API: state, pid, "
       "restarts, last error (operators; 404 when not started by `up`)", O, {200: ANY_OBJ},
       errors=(403, 404)),
    Op("GET", "/api/v1/inbox", "notifications `inbox` channels received, newest first (404 without "
       "PostgreSQL)", A, {200: ITEMS}, params=(LIMIT, OFFSET, TENANT), errors=(400, 403, 404, 503)),
    *crud("/api/v1/cep/patterns", "CEP pattern", C, PATTERN, "pattern_id"),
    Op("GET", "/api/v1/cep/matches", "recent CEP matches", C, {200: ITEMS},
       params=(Param("pattern_id"), TENANT), errors=(400, 403)),
    Op("GET", "/api/v1/cep/aggregates/{pattern_id}", "windowed aggregates of a pattern", C, {200: ITEMS},
       params=(Param("geofence_id"), Param("closed", {"enum": ["true", "false"]}), Param("from_ms", INT),
               Param("to_ms", INT), TENANT), errors=(400, 403)),
    Op("GET", "/api/v1/audit/events", "the audit trail in PostgreSQL", O,
       {200: obj(["items", "count", "limit", "offset"], items=arr(ANY_OBJ), count=INT, limit=INT, offset=INT,
                 next_offset=nullable(INT))},
       params=(Param("from", description="ISO 8601 or epoch ms, inclusive"), Param("to"),
               Param("entity_id"), Param("geofence_id"), Param("kind", {"enum": sorted(AUDIT_KINDS)}),
               Param("type"), Param("bbox", description="minlon,minlat,maxlon,maxlat"), TENANT, LIMIT,
               OFFSET), errors=(400, 403, 503)),
    Op("POST", "/api/v1/replay", "replay events or matches by event time or offsets, as NDJSON", O,
       {200: ("application/x-ndjson", STR)}, REPLAY, errors=(400, 403, 422, 503)),
    Op("GET", "/api/v1/stream", "live geofence events over a WebSocket (services/api/gateway.py)", G,
       {101: ("application/json", ANY_OBJ)},
       params=(Param("ticket", description="browsers: a single-use ticket from POST /api/v1/stream/tickets "
                     "(programs send their key in a header)"),),
       errors=(400, 401)),
    Op("POST", "/api/v1/stream/tickets", "a single-use ticket for the WebSocket (30 s)", G,
       {201: obj(["ticket", "expires_in_s", "url"], ticket=STR, expires_in_s={"type": "number"}, url=STR)}),
    Op("GET", "/processes", "the processes offered", J,
       {200: obj(["processes", "links"], processes=arr(ANY_OBJ), links=LINKS)}),
    Op("GET", "/processes/{id}", "a process description (inputs, outputs)", J,
       {200: obj(["id", "inputs", "outputs"], id=STR, inputs=ANY_OBJ, outputs=ANY_OBJ)}),
    Op("POST", "/processes/{id}/execution", "execute: sync (results) or Prefer: respond-async (201)", J,
       {200: ANY_OBJ, 201: STATUS_INFO}, EXECUTE, errors=(400, 403, 404, 413, 429),
       params=(Param("Prefer", where="header"), Param("Idempotency-Key", where="header"),
               Param("X-Geoflux-Tenant", where="header", description="operators: the job's tenant"))),
    Op("GET", "/jobs", "jobs, newest first", J,
       {200: obj(["jobs", "links"], jobs=arr(STATUS_INFO), total=INT, links=LINKS)},
       params=(OFFSET, LIMIT, Param("status"), Param("processID"), TENANT), errors=(400, 403)),
    Op("GET", "/jobs/{id}", "a job's status", J, {200: STATUS_INFO}),
    Op("DELETE", "/jobs/{id}", "dismiss a job", J, {200: STATUS_INFO}),
    Op("GET", "/jobs/{id}/results", "a finished job's results", J, {200: ANY_OBJ}, errors=(400, 404, 410, 503)),
    Op("GET", "/api/v1/tenants/{id}/quotas", "a tenant's job quotas and usage", J,
       {200: obj(["tenant_id", "limits", "usage"], tenant_id=STR, limits=ANY_OBJ, usage=ANY_OBJ)}),
    Op("POST", "/api/v1/webhooks/batch-sns", "AWS Batch state changes by SNS (SNS signature)", J,
       {200: ANY_OBJ}, ANY_OBJ, security="signed", errors=(400, 403)),
    Op("GET", "/", "landing page (OGC API - Common)", O, {200: LANDING}, security="open", errors=()),
    Op("GET", "/conformance", "conformance classes implemented", O,
       {200: obj(["conformsTo"], conformsTo=arr(STR))}, security="open", errors=()),
    Op("GET", "/api/v1/openapi.json", "this document", O,
       {200: ("application/vnd.oai.openapi+json;version=3.1", ANY_OBJ)}, security="open", errors=()),
    Op("GET", "/api/v1/docs", "this document's operations as an HTML table", O, {200: ("text/html", STR)},
       security="open", errors=()),
    Op("GET", "/healthz", "liveness", O, {200: obj(["status"], status=STR)}, security="open", errors=()),
    Op("GET", "/readyz", "readiness: broker, registry and database when configured", O,
       {200: obj(["status", "checks"], status=STR, checks=ANY_OBJ)}, security="open", errors=(503,)),
    Op("GET", "/metrics", "Prometheus metrics", O, {200: ("text/plain", STR)}, security="open", errors=()),
    Op("GET", "/console", "redirect to the console", O, {302: None}, security="open", errors=()),
    Op("GET", "/console/", "the operator console (asks for a key in the page)", O,
       {200: ("text/html", STR)}, security="open", errors=(404,)),
]
