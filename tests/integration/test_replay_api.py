"""POST /api/v1/replay against the real broker and API: by event time and by offsets, exactly
the published events (an independent expectation), in per-geofence order; filters; tenancy;
bad bodies."""

import time
import uuid

import pytest

from connectors.kafka_admin import apply
from connectors.kafka_producer import ReliableProducer
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.local_process import free_port, port_is_open
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.geo_helpers import TENANT_KEYS, start_api, stop
from tests.integration.replay_helpers import replay

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
N = 60


@pytest.fixture(scope="module")
def world(bootstrap, tmp_path_factory):
    """One namespace, one API and one published history for every test of this module."""
    s = KafkaSettings(bootstrap=bootstrap, partitions=3, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(s)
    codec = AvroCodec()
    base_ms = int(time.time() * 1000) - 10_000
    events = []
    for i in range(N):
        e = geofence_event(i, tenant="acme" if i % 3 else "globex",
                           event_type=("ENTER", "EXIT", "DWELL")[i % 3], entity=f"e{i % 6}",
                           geofence=f"g{i % 5}")
        # event times are a permutation of the publish order, up to 6 s before it: the record
        # time (publish time) and the event time disagree, as with late updates
        e["ts_ms"] = base_ms + (i * 37 % N) * 100
        events.append(e)
    publish_events(s, codec, events)
    port = free_port()
    api = start_api(s, port, tmp_path_factory.mktemp("replay-api"))
    wait_for(lambda: port_is_open("127.0.0.1", port), 60, what="API")
    yield s, codec, events, f"http://127.0.0.1:{port}"
    stop(api)


def by_geofence(records) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in records:
        out.setdefault(r["geofence_id"], []).append(r["event_id"])
    return out


def check_order(lines):
    """Partition after partition, each in increasing offset order; a summary last."""
    assert "summary" in lines[-1] and lines[-1]["summary"]["complete"], lines[-1]
    keys = [(line["partition"], line["offset"]) for line in lines[:-1]]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for line in lines[:-1]:
        assert line["key"] == line["record"]["geofence_id"]
    return [line["record"] for line in lines[:-1]]


def test_by_time_is_exactly_the_interval_in_per_geofence_order(world):
    s, _codec, events, base = world
    lo, hi = events[0]["ts_ms"] + 1500, events[0]["ts_ms"] + 4700  # from inclusive, to exclusive
    status, lines = replay(base, {"from": lo, "to": hi})
    assert status == 200, lines
    got = check_order(lines)
    expected = [e for e in events if lo <= e["ts_ms"] < hi]
    assert 0 < len(expected) < N
    assert sorted(r["event_id"] for r in got) == sorted(e["event_id"] for e in expected)
    assert by_geofence(got) == by_geofence(expected)  # publish order per geofence
    summary = lines[-1]["summary"]
    assert summary["returned"] == len(expected) and summary["mode"] == "time"
    # the boundaries themselves: an event exactly at `to` is out, exactly at `from` is in
    edge = events[5]["ts_ms"]
    status, lines = replay(base, {"from": edge, "to": edge + 1})
    assert [line["record"]["event_id"] for line in lines[:-1]] == [events[5]["event_id"]]
    status, lines = replay(base, {"from": edge - 50, "to": edge})
    assert events[5]["event_id"] not in {line["record"]["event_id"] for line in lines[:-1]}
    # ISO 8601 and `to` defaulting to now: everything
    from datetime import datetime, timezone
    iso = datetime.fromtimestamp((events[0]["ts_ms"] - 60_000) / 1000, timezone.utc).isoformat()
    status, lines = replay(base, {"from": iso})
    assert status == 200 and len(check_order(lines)) == N


def test_by_offsets_and_filters(world):
    _s, _codec, events, base = world
    status, lines = replay(base, {"from_offsets": {"0": 0, "1": 0, "2": 0}})
    assert status == 200
    everything = check_order(lines)
    assert by_geofence(everything) == by_geofence(events) and len(everything) == N
    offsets = {(line["partition"], line["offset"]): line["record"]["event_id"] for line in lines[:-1]}
    p = max(range(3), key=lambda q: sum(1 for k in offsets if k[0] == q))
    status, lines = replay(base, {"from_offsets": {str(p): 2}, "to_offsets": {str(p): 7}})
    assert [(line["partition"], line["offset"]) for line in lines[:-1]] == [(p, o) for o in range(2, 7)]
    assert [line["record"]["event_id"] for line in lines[:-1]] == [offsets[(p, o)] for o in range(2, 7)]
    # filters, alone and together with a time range
    lo, hi = events[0]["ts_ms"], events[0]["ts_ms"] + 3000
    for flt in ({"geofence_id": "g1"}, {"entity_id": "e2"}, {"event_type": "EXIT"},
                {"geofence_id": "g3", "event_type": "ENTER"}):
        status, lines = replay(base, {"from": lo, "to": hi, **flt})
        want = [e["event_id"] for e in events if lo <= e["ts_ms"] < hi
                and all(e[k] == v for k, v in flt.items())]
        got = check_order(lines)
        assert sorted(r["event_id"] for r in got) == sorted(want) and want, flt


def test_cep_matches_topic(world):
    s, codec, _events, base = world
    t = topic("geo.cep-matches", s)
    m = {"match_id": "m1", "pattern_id": "loitering", "pattern_version": 1, "tenant_id": "acme",
         "key": "e1", "severity": "high", "event_ids": ["a", "b"], "start_ms": 1000, "end_ms": 2000,
         "detail": {}}
    p = ReliableProducer(s)
    p.send(t, codec.encode(t, "CepMatch", m), key="e1")
    p.send(t, codec.encode(t, "CepMatch", {**m, "match_id": "m2", "pattern_id": "other"}), key="e1")
    p.flush_or_raise()
    status, lines = replay(base, {"topic": "geo.cep-matches", "pattern_id": "loitering",
                                  "from_offsets": {str(q): 0 for q in range(3)}})
    assert status == 200 and [line["record"]["match_id"] for line in lines[:-1]] == ["m1"]


def test_tenancy(world):
    _s, _codec, events, base = world
    everything = {"from_offsets": {"0": 0, "1": 0, "2": 0}}
    status, lines = replay(base, everything, key=TENANT_KEYS["acme"])
    assert status == 200
    got = {line["record"]["event_id"] for line in lines[:-1]}
    assert got == {e["event_id"] for e in events if e["tenant_id"] == "acme"}
    assert replay(base, {**everything, "tenant_id": "acme"}, key=TENANT_KEYS["acme"])[0] == 200
    status, problem = replay(base, {**everything, "tenant_id": "globex"}, key=TENANT_KEYS["acme"])
    assert status == 403 and "globex" in problem["detail"]
    assert replay(base, everything, key=TENANT_KEYS["acme"], query="?tenant_id=globex")[0] == 403
    assert replay(base, everything, key=None)[0] == 401
    status, lines = replay(base, {**everything, "tenant_id": "globex"})  # the operator may choose
    assert {line["record"]["tenant_id"] for line in lines[:-1]} == {"globex"}


@pytest.mark.parametrize("body,status,words", [
    (b"{not json", 400, "JSON"),
    ([1, 2], 422, "object"),
    ({}, 422, "exactly one"),
    ({"from": 2000, "to": 1000}, 422, "before"),
    ({"from": "yesterday"}, 422, "ISO 8601"),
    ({"from": 1, "from_offsets": {"0": 0}}, 422, "exactly one"),
    ({"from_offsets": {"99": 0}}, 422, "no partition"),
    ({"from_offsets": {"x": 0}}, 422, "partition"),
    ({"from_offsets": {"0": 5}, "to_offsets": {"0": 2}}, 422, "before"),
    ({"from": 1, "topic": "alerts.status"}, 422, "cannot be replayed"),
    ({"from": 1, "event_type": "LEAVE"}, 422, "event_type"),
    ({"from": 1, "topic": "geo.cep-matches", "geofence_id": "g1"}, 422, "does not apply"),
    ({"from": 1, "margin_s": -1}, 422, "margin_s"),
    ({"from": 1, "limit": 5}, 422, "unknown field"),
])
def test_bad_bodies(world, body, status, words):
    got, problem = replay(world[3], body)
    assert got == status and words in problem["detail"], problem
