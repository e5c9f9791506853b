"""The join kind: two events of different entities at one fence within T, by entity filters
(prefix, glob, attributes and the attributes hook), a distance relation, both arrival orders,
out of order within the lateness, and across a changelog round trip."""

import pytest

from geoflux.errors import ValidationError
from streams.cep import specs
from streams.cep.engine import Engine
from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState
from streams.cep.patterns import parse_pattern

DEPOT = {"pattern_id": "truck-and-car", "tenant_id": "t", "severity": "high", "kind": "join",
         "within_s": 120, "geofence_id": "depot", "lateness_s": 5,
         "left": {"event_type": "ENTER", "entity_prefix": "truck-"},
         "right": {"event_type": "ENTER", "entity_glob": "car-*", "attributes": {"registered": "false"}}}


def ev(i, entity, ts, gid="depot", etype="ENTER", lon=13.4, lat=52.5, **attrs):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts, "entity_id": entity,
            "lon": lon, "lat": lat, "attributes": attrs}


def run(body, events, restart=False, now=10**13):
    p = parse_pattern(body)
    engine, ks, out = Engine(PatternTable([p])), KeyState("t", "depot"), []
    for e in events:
        out += engine.on_event(ks, e)[0]
        if restart:
            ks = KeyState.from_json("t", "depot", ks.to_json())
    return out + engine.on_tick(ks, now)


UNREGISTERED = {"registered": "false"}


@pytest.mark.parametrize("events,expected", [
    ([ev(1, "truck-1", 0), ev(2, "car-9", 60_000, **UNREGISTERED)], [("ev1", "ev2")]),
    ([ev(2, "car-9", 0, **UNREGISTERED), ev(1, "truck-1", 60_000)], [("ev1", "ev2")]),  # right first
    ([ev(1, "truck-1", 0), ev(2, "car-9", 120_000, **UNREGISTERED)], [("ev1", "ev2")]),  # exactly T
    ([ev(1, "truck-1", 0), ev(2, "car-9", 120_001, **UNREGISTERED)], []),  # just past T
    ([ev(1, "truck-1", 0), ev(2, "car-9", 1000, registered="true")], []),  # a registered car
    ([ev(1, "truck-1", 0), ev(2, "car-9", 1000)], []),  # attributes unknown: not "false"
    ([ev(1, "truck-1", 0), ev(2, "van-3", 1000, **UNREGISTERED)], []),  # not a car
    ([ev(1, "truck-1", 0), ev(2, "car-9", 1000, gid="yard", **UNREGISTERED)], []),  # another fence
    ([ev(1, "truck-1", 0, etype="EXIT"), ev(2, "car-9", 1000, **UNREGISTERED)], []),  # not an ENTER
])
def test_join_pairs_a_truck_and_an_unregistered_car_in_the_depot(events, expected):
    out = run(DEPOT, events)
    assert [m.event_ids for m in out] == expected
    for m in out:
        assert (m.detail["left_entity"], m.detail["right_entity"], m.key) == ("truck-1", "car-9", "depot")


def test_join_never_pairs_an_entity_with_itself():
    body = {**DEPOT, "left": {"event_type": "ENTER"}, "right": {"event_type": "ENTER"}}
    assert run(body, [ev(1, "x", 0), ev(2, "x", 1000)]) == []
    assert [m.event_ids for m in run(body, [ev(1, "x", 0), ev(2, "y", 1000)])] == [("ev1", "ev2")]


def test_skip_past_last_pairs_each_event_once_and_allow_pairs_all():
    events = [ev(1, "truck-1", 0), ev(2, "truck-2", 1000), ev(3, "car-1", 2000, **UNREGISTERED),
              ev(4, "car-2", 3000, **UNREGISTERED), ev(5, "car-3", 4000, **UNREGISTERED)]
    assert [m.event_ids for m in run(DEPOT, events)] == [("ev1", "ev3"), ("ev2", "ev4")]
    allow = [m.event_ids for m in run({**DEPOT, "overlap": "allow"}, events)]
    assert allow == [("ev1", "ev3"), ("ev2", "ev3"), ("ev1", "ev4"), ("ev2", "ev4"), ("ev1", "ev5"), ("ev2", "ev5")]


def test_out_of_order_within_lateness_and_across_restarts_joins_as_in_order():
    in_order = [ev(1, "truck-1", 0), ev(2, "car-1", 3_000, **UNREGISTERED), ev(3, "truck-2", 230_000),
                ev(4, "car-2", 233_000, **UNREGISTERED)]
    shuffled = [in_order[1], in_order[0], in_order[3], in_order[2]]  # each pair 3 s or less out of order
    expected = [m.match_id for m in run(DEPOT, in_order)]
    assert len(expected) == 2
    assert [m.match_id for m in run(DEPOT, shuffled)] == expected
    assert [m.match_id for m in run(DEPOT, shuffled, restart=True)] == expected


def test_distance_relation():
    body = {**DEPOT, "max_distance_m": 500}
    near = [ev(1, "truck-1", 0), ev(2, "car-1", 1000, lon=13.4, lat=52.5036, **UNREGISTERED)]  # ~400 m
    far = [ev(1, "truck-1", 0), ev(2, "car-1", 1000, lon=13.4, lat=52.51, **UNREGISTERED)]  # ~1.1 km
    (m,) = run(body, near)
    assert 350 < float(m.detail["distance_m"]) < 450
    assert run(body, far) == []


def test_attributes_come_through_the_enrichment_hook(monkeypatch):
    registry = {"car-9": {"registered": "false"}, "car-8": {"registered": "true"}}
    monkeypatch.setattr(specs, "attributes_of", lambda e: registry.get(e["entity_id"], {}))
    out = run(DEPOT, [ev(1, "truck-1", 0), ev(2, "car-8", 500), ev(3, "car-9", 1000)])
    assert [m.event_ids for m in out] == [("ev1", "ev3")]


def test_held_events_keep_only_the_attributes_patterns_filter_on():
    p = parse_pattern(DEPOT)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "depot")
    engine.on_event(ks, ev(1, "car-1", 0, registered="false", secret="x" * 1000))
    assert "secret" not in ks.to_json() and '"registered":"false"' in ks.to_json()


@pytest.mark.parametrize("change,reason", [
    ({"left": None}, "left: must be an object"),
    ({"right": {"event_type": "ARRIVE"}}, "right: needs event_type"),
    ({"left": {"event_type": "ENTER", "geofence_id": "x"}}, "geofence_id belongs to the pattern"),
    ({"left": {"event_type": "ENTER", "entity_regex": "a.*"}}, "unknown field"),
    ({"left": {"event_type": "ENTER", "entity_glob": "x" * 201}}, "entity_glob"),
    ({"left": {"event_type": "ENTER", "attributes": {"class": 3}}}, "attributes"),
    ({"within_s": 0}, "within_s"),
    ({"max_distance_m": -1}, "max_distance_m"),
])
def test_bad_joins_have_reasons(change, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_pattern({**DEPOT, **change})


def test_join_is_keyed_by_geofence():
    assert parse_pattern(DEPOT).keyed_by == "geofence"
