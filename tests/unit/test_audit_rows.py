"""The audit trail's pure core: record -> row, partitions, retention, API parameters."""

from datetime import date, datetime, timezone

import pytest

from connectors.audit_rows import (AuditQuery, backoff, partition_bounds, partition_day,
                                   partition_name, partitions_before, to_row)
from geoflux.errors import ValidationError
from services.api.problems import HTTPProblem
from services.api.routes_audit import parse_query

EVENT = {"event_id": "e1", "event_type": "ENTER", "entity_id": "truck-1", "geofence_id": "zone-7",
         "geofence_version": 1, "tenant_id": "acme", "lon": 13.4, "lat": 52.5,
         "ts_ms": 1_700_000_000_123, "source": "loc:1", "reason": None, "produced_ms": None,
         "attributes": {}}
MATCH = {"match_id": "m1", "pattern_id": "loiter", "pattern_version": 1, "tenant_id": "acme",
         "key": "truck-1|zone-7", "severity": "high", "event_ids": ["e1"], "start_ms": 1,
         "end_ms": 1_700_000_000_000, "detail": {"kind": "count"}}
ALERT = {"alert_id": "a1", "tenant_id": "acme", "status": "SENT", "channels": {"hook": "SENT"},
         "attempts": {}, "last_errors": {}, "fallback_of": {}, "reason": None, "rule_id": "r",
         "severity": "info", "title": "", "created_ms": 0, "delivered_ms": None,
         "delivered_by": {}, "updated_ms": 1_700_000_000_500}
JOB = {"job_id": "j1", "tenant_id": "globex", "process_id": "buffer", "status": "running",
       "progress": 10, "message": None, "tier": None, "attempt": 1, "created_ms": 1,
       "started_ms": None, "finished_ms": None, "updated_ms": 1_700_000_000_900,
       "idempotency_key": "", "priority": 5}


def test_geofence_event_row():
    row = to_row("geofence_event", EVENT, "geo.geofence-events", 2, 40)
    assert (row.id, row.kind, row.tenant_id, row.entity_id, row.geofence_id, row.type) == \
        ("e1", "geofence_event", "acme", "truck-1", "zone-7", "ENTER")
    assert row.ts == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)
    assert (row.lon, row.lat, row.src_topic, row.src_partition, row.src_offset) == \
        (13.4, 52.5, "geo.geofence-events", 2, 40)
    assert '"event_id":"e1"' in row.payload


def test_the_same_record_maps_to_the_same_key_wherever_it_is_read():
    a = to_row("geofence_event", EVENT, "t", 0, 1)
    b = to_row("geofence_event", dict(EVENT), "t", 0, 99)
    assert (a.id, a.ts) == (b.id, b.ts)


@pytest.mark.parametrize("key,detail,expected", [
    ("truck-1|zone-7", {"kind": "count"}, ("truck-1", "zone-7")),
    ("truck-1", {"kind": "sequence"}, ("truck-1", None)),
    ("zone-7", {"kind": "comovement"}, (None, "zone-7")),
    ("zone-7|truck-1", {"kind": "aggregate"}, ("truck-1", "zone-7")),
    ("depot", {"kind": "join", "geofence_id": "depot"}, (None, "depot")),  # two entities: neither
    ("gate", {"kind": "rate_outlier", "geofence_id": "gate"}, (None, "gate")),
    ("dock|1", {"kind": "dwell_outlier", "geofence_id": "dock|1", "entity_id": "lorry-3"}, ("lorry-3", "dock|1")),
])
def test_cep_match_subjects(key, detail, expected):
    row = to_row("cep_match", {**MATCH, "key": key, "detail": detail}, "t", 0, 0)
    assert (row.entity_id, row.geofence_id) == expected
    assert (row.id, row.type, row.lon) == ("m1", "loiter", None)
    assert row.ts == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)


def test_status_changes_are_told_apart_by_what_changed():
    a = to_row("alert_status", ALERT, "t", 0, 0)
    assert a.id.startswith("a1:SENT:1700000000500:") and a.type == "SENT" and a.entity_id is None
    same = to_row("alert_status", dict(ALERT), "t", 0, 5)
    other = to_row("alert_status", {**ALERT, "channels": {"hook": "SENT", "mail": "SENT"}}, "t", 0, 6)
    assert same.id == a.id and other.id != a.id
    j = to_row("job_status", JOB, "t", 0, 0)
    assert j.id.startswith("j1:running:1:10:1700000000900:") and j.tenant_id == "globex"
    assert to_row("job_status", {**JOB, "progress": 50}, "t", 0, 0).id != j.id


@pytest.mark.parametrize("kind,rec", [
    ("geofence_event", {k: v for k, v in EVENT.items() if k != "ts_ms"}),
    ("geofence_event", {**EVENT, "ts_ms": -5}),
    ("geofence_event", {**EVENT, "ts_ms": 10**17}),
    ("cep_match", {**MATCH, "key": None}),
    ("job_status", {"job_id": "x"}),
    ("nonsense", EVENT),
])
def test_records_that_cannot_be_rows_are_validation_errors(kind, rec):
    with pytest.raises(ValidationError):
        to_row(kind, rec, "t", 0, 0)


def test_impossible_positions_keep_the_row_without_geometry():
    row = to_row("geofence_event", {**EVENT, "lon": 500.0}, "t", 0, 0)
    assert (row.lon, row.lat) == (None, None)


def test_partition_names_bounds_and_retention():
    d = date(2024, 2, 29)
    assert partition_name("geoflux_audit", d) == "geoflux_audit_p20240229"
    assert partition_bounds(d) == ("2024-02-29 00:00:00+00", "2024-03-01 00:00:00+00")
    assert partition_day("geoflux_audit", "geoflux_audit_p20240229") == d
    for foreign in ("geoflux_audit_p2024022", "other_p20240229", "geoflux_audit_p20241399",
                    "geoflux_audit_x_p20240229"):
        assert partition_day("geoflux_audit", foreign) is None
    names = ["geoflux_audit_p20240101", "geoflux_audit_p20240102", "geoflux_audit_p20240103",
             "geoflux_audit_old"]
    assert partitions_before("geoflux_audit", names, date(2024, 1, 3)) == names[:2]


def test_backoff_repeats_its_last_step():
    assert [backoff((1.0, 2.0, 4.0), n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_query_parameters():
    q = parse_query({"from": "2024-01-01T00:00:00Z", "to": "1704070800000", "entity_id": "e",
                     "kind": "geofence_event", "bbox": "13,52,14,53", "limit": "10"}, "acme", 1000)
    assert q == AuditQuery(tenant_id="acme", start=datetime(2024, 1, 1, tzinfo=timezone.utc),
                           end=datetime(2024, 1, 1, 1, tzinfo=timezone.utc), entity_id="e",
                           kind="geofence_event", bbox=(13.0, 52.0, 14.0, 53.0), limit=10)
    assert parse_query({"from": "2024-01-01T02:00:00"}, None, 10).start.tzinfo is not None


@pytest.mark.parametrize("params,reason", [
    ({"from": "yesterday"}, "from="), ({"to": "2024-13-01"}, "to="),
    ({"from": "2024-01-02", "to": "2024-01-01"}, "after"), ({"kind": "x"}, "kind"),
    ({"bbox": "1,2,3"}, "bbox"), ({"bbox": "10,0,5,1"}, "minlon"), ({"bbox": "a,b,c,d"}, "bbox"),
    ({"limit": "0"}, "limit"), ({"limit": "5000"}, "limit"), ({"offset": "-1"}, "offset"),
    ({"limit": "ten"}, "integers"), ({"entity": "e"}, "unknown"),
])
def test_bad_query_parameters_are_400_with_the_reason(params, reason):
    with pytest.raises(HTTPProblem) as err:
        parse_query(params, None, 1000)
    assert err.value.status == 400 and reason in err.value.detail


def test_rows_are_whole_and_their_edges_are_pinned():
    from connectors.audit_rows import AuditRow, canonical_json, ms_to_datetime

    # a position on the edges of lon/lat is kept; one past them is dropped, the row stays
    for lon, lat in ((-180, -90), (180, 90), (-180.0, 90.0)):
        row = to_row("geofence_event", {**EVENT, "lon": lon, "lat": lat}, "t", 0, 0)
        assert (row.lon, row.lat) == (float(lon), float(lat))
    for lon, lat in ((-180.01, 0), (180.01, 0), (0, -90.01), (0, 90.01), ("1", 0)):
        row = to_row("geofence_event", {**EVENT, "lon": lon, "lat": lat}, "t", 0, 0)
        assert (row.lon, row.lat) == (None, None)
    # record times: 0 and the last millisecond of 9999 are in, one outside either is refused
    assert ms_to_datetime(0) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert ms_to_datetime(253_402_300_799_999).year == 9999
    for bad in (-1, 253_402_300_800_000, 1.5, "1"):
        with pytest.raises(ValidationError, match=r"^record time .* ms is outside 1970\.\.9999$"):
            ms_to_datetime(bad)
    # the payload is canonical: keys sorted, no spaces, anything else as its text
    assert canonical_json({"b": 1, "a": date(2026, 1, 2)}) == '{"a":"2026-01-02","b":1}'
    payload = canonical_json(MATCH)
    assert to_row("cep_match", MATCH, "geo.cep-matches", 1, 7) == AuditRow(
        "m1", "cep_match", "acme", "truck-1", "zone-7", "loiter",
        datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc), None, None, payload, "geo.cep-matches", 1, 7)
    # the detail's ids win over the key's parts
    detailed = {**MATCH, "detail": {"kind": "count", "entity_id": "E", "geofence_id": "G"}}
    row = to_row("cep_match", detailed, "t", 0, 0)
    assert (row.entity_id, row.geofence_id) == ("E", "G")
    assert to_row("cep_match", {**MATCH, "key": "truck-1"}, "t", 0, 0).geofence_id is None
    alert = to_row("alert_status", ALERT, "alerts.status", 0, 3)
    assert alert == AuditRow(alert.id, "alert_status", "acme", None, None, "SENT",
                             datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=timezone.utc), None, None,
                             canonical_json(ALERT), "alerts.status", 0, 3)
    assert alert.id.startswith("a1:SENT:1700000000500:") and len(alert.id.rsplit(":", 1)[1]) == 12
    job = to_row("job_status", JOB, "jobs.status", 2, 9)
    assert job == AuditRow(job.id, "job_status", "globex", None, None, "running",
                           datetime(2023, 11, 14, 22, 13, 20, 900000, tzinfo=timezone.utc), None, None,
                           canonical_json(JOB), "jobs.status", 2, 9)
    assert job.id.startswith("j1:running:1:10:1700000000900:")
    with pytest.raises(ValidationError, match=r"^job_status record lacks a field the audit row needs: KeyError\('progress'\)$"):
        to_row("job_status", {k: v for k, v in JOB.items() if k != "progress"}, "t", 0, 0)
    with pytest.raises(ValidationError, match=r"^unknown audit kind 'other'$"):
        to_row("other", JOB, "t", 0, 0)
