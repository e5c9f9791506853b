"""CEP on the real broker: route deviation, loitering, track gap and convoy from scripted
trajectories, with the CEP workers SIGKILLed mid-window; matches de-duplicated by id must be
exactly the expected ones."""

import time

import pytest

from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.geo_helpers import (EventCollector, http, kill, lag_is_zero, publish_fences,
                                           publish_locations, start_api, start_cli, start_worker, stop)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def box(gid, x, y, w=1.0):
    return {"type": "Feature", "id": gid, "properties": {"name": gid, "tenant_id": "t"},
            "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + w, y], [x + w, y + w], [x, y + w], [x, y]]]}}


PATTERNS = [
    {"pattern_id": "route-deviation", "tenant_id": "t", "severity": "high", "kind": "absence",
     "within_s": 6, "trigger": {"event_type": "ENTER", "geofence_id": "A"},
     "expected": {"event_type": "ENTER", "geofence_id": "B"}},
    {"pattern_id": "loitering", "tenant_id": "t", "severity": "warning", "kind": "count",
     "within_s": 600, "at_least": 3, "event": {"event_type": "EXIT", "geofence_id": "G"}},
    {"pattern_id": "track-gap", "tenant_id": "t", "severity": "info", "kind": "track_gap", "within_s": 8},
    {"pattern_id": "convoy", "tenant_id": "t", "severity": "high", "kind": "comovement",
     "within_s": 60, "at_least": 3, "geofence_id": "C"},
    {"pattern_id": "traffic", "tenant_id": "t", "severity": "info", "kind": "aggregate",
     "geofence_id": "G", "window": {"type": "tumbling", "size_s": 10}},
    {"pattern_id": "a-then-b", "tenant_id": "t", "severity": "critical", "kind": "sequence",
     "within_s": 30, "lateness_s": 5, "steps": [{"event_type": "ENTER", "geofence_id": "A"},
                                                {"event_type": "ENTER", "geofence_id": "B"}],
     "alert": {"channels": ["ops"], "title": "{key} went from A to B"}},
]


def test_cep_scenarios_survive_sigkill(kafka_settings, tmp_path):
    codec = AvroCodec()
    registry = publish_fences(kafka_settings, [box("A", 0, 0), box("B", 2, 0), box("G", 4, 0),
                                               box("C", 6, 0)], codec)
    port = free_port()
    procs = {"api": start_api(kafka_settings, port, tmp_path)}
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
    for p in PATTERNS:
        status, body = http("POST", f"{base}/api/v1/cep/patterns", p)
        assert status == 201, body
    status, problem = http("POST", f"{base}/api/v1/cep/patterns", {**PATTERNS[0], "pattern_id": "x",
                                                                    "within_s": -1})
    assert status == 422 and "within_s" in problem["detail"]
    assert http("GET", f"{base}/api/v1/cep/patterns")[1]["total"] == len(PATTERNS)
    # the newer kinds through the API: valid ones accepted, bad ones a 422 with the reason
    other = {"tenant_id": "acme", "severity": "info"}
    for body in ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER", "entity_prefix": "truck-"},
                  "right": {"event_type": "ENTER", "entity_glob": "car-*"}},
                 {"kind": "speed", "max_speed_kmh": 250}, {"kind": "dwell_outlier"},
                 {"kind": "rate_outlier", "window_s": 300}):
        status, doc = http("POST", f"{base}/api/v1/cep/patterns", {**other, **body, "pattern_id": f"new-{body['kind']}"})
        assert status == 201, doc
    for body, reason in (({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER"}}, "right"),
                         ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER", "entity_regex": "(a+)+$"},
                           "right": {"event_type": "ENTER"}}, "unknown field"),
                         ({"kind": "speed"}, "max_speed_kmh"),
                         ({"kind": "dwell_outlier", "direction": "up"}, "direction"),
                         ({"kind": "rate_outlier", "window_s": 60, "min_count": 0}, "min_count")):
        status, problem = http("POST", f"{base}/api/v1/cep/patterns", {**other, **body, "pattern_id": "bad"})
        assert status == 422 and reason in problem["detail"], (body, problem)
    matches = EventCollector(kafka_settings, codec, "geo.cep-matches", "CepMatch")
    events = EventCollector(kafka_settings, codec)
    procs["evaluator"] = start_worker(kafka_settings, "0", tmp_path)
    for mode in ("rekey", "entity", "geofence"):
        procs[mode] = start_cli(kafka_settings, ["worker", "cep", "--mode", mode], f"cep-{mode}", tmp_path)
    procs["router"] = start_cli(kafka_settings, ["worker", "alert-router"], "alert-router", tmp_path)
    candidates = EventCollector(kafka_settings, codec, "alerts.candidates", "Alert")
    dead = EventCollector(kafka_settings, codec, "geo.cep.dlq", "DlqRecord")
    try:
        t0 = int(time.time() * 1000)
        out = (-5.0, 0.5)
        rows = [
            ("v1", -5, 0.5, t0), ("v1", 0.5, 0.5, t0 + 1000), ("v1", 2.5, 0.5, t0 + 2000),  # A then B
            ("v2", -5, 0.5, t0), ("v2", 0.5, 0.5, t0 + 1000), ("v2", 0.5, 3.0, t0 + 2000),  # A, no B
            ("v3", 4.5, 0.5, t0), ("v3", 3.5, 0.5, t0 + 1000), ("v3", 4.5, 0.5, t0 + 2000),
            ("v3", 3.5, 0.5, t0 + 3000), ("v3", 4.5, 0.5, t0 + 4000), ("v3", 3.5, 0.5, t0 + 5000),
            ("v4", *out, t0), ("v4", 6.5, 0.5, t0 + 1000),
            ("v5", *out, t0), ("v5", 6.4, 0.4, t0 + 2000),
        ]
        publish_locations(kafka_settings, codec, rows, tenant="t")
        wait_for(lambda: any(r["entity_id"] == "v5" and r["geofence_id"] == "C" for r in events.snapshot()),
                 60, what="v5 ENTER C")
        # mid-window: v2's deviation timer is pending, the convoy has 2 of 3 members
        kill(procs["entity"])
        kill(procs["geofence"])
        procs["entity"] = start_cli(kafka_settings, ["worker", "cep", "--mode", "entity"], "cep-entity-2", tmp_path)
        procs["geofence"] = start_cli(kafka_settings, ["worker", "cep", "--mode", "geofence"], "cep-geofence-2", tmp_path)
        publish_locations(kafka_settings, codec, [("v6", *out, t0), ("v6", 6.6, 0.6, t0 + 3000),
                                                  ("v7", 4.5, 0.5, t0 + 30_000)], tenant="t")
        # v8's events arrive out of event-time order (B before A), within the 5 s lateness, and
        # then one ENTER A a minute older than the rest: too late, so it goes to the CEP DLQ
        v8 = [dict(geofence_event(i, "t", "ENTER", "v8", gid), ts_ms=t0 + dt)
              for i, (gid, dt) in enumerate([("B", 3000), ("A", 1000), ("A", -60_000)])]
        publish_events(kafka_settings, codec, v8[:2])
        wait_for(lambda: ("a-then-b", "v8") in {(m["pattern_id"], m["key"]) for m in matches.snapshot()},
                 60, what="v8's out-of-order sequence")
        publish_events(kafka_settings, codec, v8[2:])
        expected = {("route-deviation", "v2"), ("loitering", "v3|G"), ("convoy", "C"),
                    ("a-then-b", "v1"), ("a-then-b", "v8")} | {
            ("track-gap", v) for v in ("v1", "v2", "v3", "v4", "v5", "v6", "v7")}

        def found():
            return {(m["pattern_id"], m["key"]) for m in matches.snapshot()}

        try:
            wait_for(lambda: found() >= expected, 90, what="the expected matches")
        except AssertionError:
            raise AssertionError(f"missing {sorted(expected - found())}, found {sorted(found())}") from None
        # everything consumed everywhere, so no match is still on its way
        groups = (("geoflux-evaluator", "geo.locations"), ("geoflux-cep-rekey", "geo.geofence-events"),
                  ("geoflux-cep-entity", "geo.cep-input"), ("geoflux-cep-entity", "geo.locations"),
                  ("geoflux-cep-geofence", "geo.geofence-events"))
        lagging = lambda: [gt for gt in groups if not lag_is_zero(kafka_settings, *gt)]
        try:
            wait_for(lambda: not lagging(), 60, what="every CEP input consumed")
        except AssertionError:
            raise AssertionError(f"still lagging: {lagging()}") from None
        by_id = {m["match_id"]: m for m in matches.snapshot()}
        assert {(m["pattern_id"], m["key"]) for m in by_id.values()} == expected
        deviation = next(m for m in by_id.values() if m["pattern_id"] == "route-deviation")
        assert deviation["end_ms"] - deviation["start_ms"] == 6000 and len(deviation["event_ids"]) == 1
        convoy = next(m for m in by_id.values() if m["pattern_id"] == "convoy")
        assert convoy["detail"]["entities"] == "v4,v5,v6" and len(convoy["event_ids"]) == 3
        loiter = next(m for m in by_id.values() if m["pattern_id"] == "loitering")
        assert loiter["detail"]["count"] == "3"
        # v3's six crossings of G, in 10 s tumbling windows closed by v7's later ENTER (event
        # time); and v7's own window, which no later event at G closes: the input clock does
        # (the wall clock once every input is idle), so a quiet fence's window closes on time
        def closed_windows():
            return http("GET", f"{base}/api/v1/cep/aggregates/traffic?closed=true")[1]["items"]
        wait_for(lambda: sum(w["entries"] for w in closed_windows()) == 4, 30, what="closed windows")
        assert sum(w["exits"] for w in closed_windows()) == 3
        v7_window = max(closed_windows(), key=lambda w: w["start_ms"])
        assert (v7_window["entries"], v7_window["exits"]) == (1, 0)
        assert v7_window["start_ms"] <= t0 + 30_000 < v7_window["end_ms"]
        assert all(w["end_ms"] - w["start_ms"] == 10_000 for w in closed_windows())
        assert http("GET", f"{base}/api/v1/cep/matches?pattern_id=convoy")[1]["total"] == 1
        # the pattern's own alert: one candidate per a-then-b match, from rule cep-a-then-b
        wait_for(lambda: len({a["source_id"] for a in candidates.snapshot()}) == 2, 30, what="CEP alerts")
        alerts = {a["source_id"]: a for a in candidates.snapshot()}
        a_then_b = {m["match_id"]: m["key"] for m in by_id.values() if m["pattern_id"] == "a-then-b"}
        assert set(alerts) == set(a_then_b)
        assert {(a["rule_id"], a["severity"], a["title"]) for a in alerts.values()} == {
            ("cep-a-then-b", "critical", f"{key} went from A to B") for key in a_then_b.values()}
        # the late ENTER A: dead-lettered once, by the entity-keyed stage, with the reason
        wait_for(lambda: dead.snapshot(), 30, what="the late event in geo.cep.dlq")
        assert len(dead.snapshot()) == 1 and dead.snapshot()[0]["error_class"] == "late"
        assert "a-then-b" in dead.snapshot()[0]["error_message"]
        assert codec.decode(dead.snapshot()[0]["original_value"], "GeofenceEvent")["event_id"] == v8[2]["event_id"]
    finally:
        candidates.close()
        dead.close()
        for p in procs.values():
            stop(p)
        matches.close()
        events.close()
        registry.close()
