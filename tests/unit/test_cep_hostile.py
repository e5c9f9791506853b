"""Hostile and unlucky ids in CEP state: geofence and entity ids that spell the operator's own
field names, unicode, 200 characters, `|` and `/`; and two tenants using the same ids."""

import json

import pytest

from streams.cep.engine import Engine
from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState
from streams.cep.patterns import parse_pattern

HOSTILE = ["max", "held", "wm", "late", "by", "w", "occ", "pending", "partials", "*", "",
           "zone|7", "a/b", "tenant/zone", "Zoné-東京-🚚", "x" * 200, "|", "/"]
HOSTILE = [h for h in HOSTILE if h]  # a geofence id is never empty


def ev(i, etype, gid, ts, entity="e1", tenant="t"):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity, "tenant_id": tenant, "lon": 0.0, "lat": 0.0, "attributes": {}}


def run(pattern, events, key):
    """Through the engine, with a changelog round trip (JSON, as the stage writes it) after
    every event: what a restart would read back."""
    tenant = pattern.tenant_id
    engine, ks, out = Engine(PatternTable([pattern])), KeyState(tenant, key), []
    for e in events:
        got, _late = engine.on_event(ks, e)
        out += got
        ks = KeyState.from_json(tenant, key, ks.to_json())
    return out + engine.on_tick(ks, 10**13)


@pytest.mark.parametrize("per", ["entity", "geofence"])
def test_count_over_hostile_geofences_matches_and_survives_restarts(per):
    p = parse_pattern({"pattern_id": "loiter", "tenant_id": "t", "severity": "info", "kind": "count",
                       "within_s": 3600, "at_least": 2, "per": per, "event": {"event_type": "EXIT"}})
    for gid in HOSTILE:
        events = [ev(i, "EXIT", gid, 1000 * i) for i in range(4)]
        out = run(p, events, "e1" if per == "entity" else gid)
        assert [m.event_ids for m in out] == [("ev0", "ev1"), ("ev2", "ev3")], gid
        assert all(m.detail["geofence_id"] == gid for m in out)


def test_count_keeps_hostile_fences_apart_from_each_other():
    p = parse_pattern({"pattern_id": "loiter", "tenant_id": "t", "severity": "info", "kind": "count",
                       "within_s": 3600, "at_least": 2, "event": {"event_type": "EXIT"}})
    events = [ev(i, "EXIT", gid, 1000 * i) for i, gid in enumerate(HOSTILE)]
    assert run(p, events, "e1") == []  # each fence exited once: no fence reached 2


@pytest.mark.parametrize("body", [
    {"kind": "sequence", "within_s": 60, "steps": [{"event_type": "ENTER", "geofence_id": "{g}"},
                                                    {"event_type": "EXIT", "geofence_id": "{g}"}]},
    {"kind": "absence", "within_s": 60, "trigger": {"event_type": "ENTER", "geofence_id": "{g}"},
     "expected": {"event_type": "ENTER", "geofence_id": "nowhere"}},
    {"kind": "comovement", "within_s": 60, "at_least": 2, "geofence_id": "{g}"},
    {"kind": "aggregate", "geofence_id": "{g}", "window": {"type": "tumbling", "size_s": 60}},
])
def test_every_kind_takes_hostile_geofence_ids(body):
    for gid in HOSTILE:
        doc = json.loads(json.dumps(body).replace("{g}", gid.replace("\\", "\\\\")))
        p = parse_pattern({"pattern_id": "p", "tenant_id": "t", "severity": "info", **doc})
        events = [ev(0, "ENTER", gid, 0, "a"), ev(1, "ENTER", gid, 1000, "b"),
                  ev(2, "EXIT", gid, 2000, "a"), ev(3, "ENTER", "other", 200_000, "a")]
        key = "a" if p.keyed_by == "entity" else gid
        out = run(p, [e for e in events if p.keyed_by == "geofence" or e["entity_id"] == "a"], key)
        assert out, (body["kind"], gid)


@pytest.mark.parametrize("entity", HOSTILE)
def test_hostile_entity_ids_as_keys(entity):
    p = parse_pattern({"pattern_id": "p", "tenant_id": "t", "severity": "info", "kind": "sequence",
                       "within_s": 60, "steps": [{"event_type": "ENTER", "geofence_id": "max"},
                                                 {"event_type": "EXIT", "geofence_id": "max"}]})
    out = run(p, [ev(0, "ENTER", "max", 0, entity), ev(1, "EXIT", "max", 10, entity)], entity)
    assert [(m.key, m.event_ids) for m in out] == [(entity, ("ev0", "ev1"))]


def test_match_ids_differ_across_tenants_with_the_same_ids():
    body = {"pattern_id": "p", "severity": "info", "kind": "sequence", "within_s": 60,
            "steps": [{"event_type": "ENTER", "geofence_id": "depot"},
                      {"event_type": "EXIT", "geofence_id": "depot"}]}
    ids = []
    for tenant in ("acme", "globex"):
        p = parse_pattern({**body, "tenant_id": tenant})
        out = run(p, [ev(0, "ENTER", "depot", 0, tenant=tenant), ev(1, "EXIT", "depot", 10, tenant=tenant)],
                  "truck-1")
        assert len(out) == 1
        ids.append(out[0].match_id)
        assert out[0].record()["tenant_id"] == tenant
    assert ids[0] != ids[1]
