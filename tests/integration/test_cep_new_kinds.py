"""join, speed, dwell_outlier and rate_outlier end to end through Kafka, with the CEP stages
SIGKILLed mid-stream: the matches a read_committed reader sees are exactly, and exactly once,
those of the uninterrupted run — the same engine fed the same records in-process.

The records are seeded and historical (from four hours before now): the stages' timers run on the
input clock, which follows the records, not the wall clock — also right after a restart."""

import math
import random
import time

import pytest

from connectors.kafka_producer import ReliableProducer
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.cep.engine import Engine
from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState
from streams.cep.patterns import parse_pattern
from tests.conftest import wait_for
from tests.integration.cep_helpers import put_patterns, restart_cep, start_cep, tracebacks
from tests.integration.geo_helpers import EventCollector, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T = "t"
PATTERNS = [
    {"pattern_id": "truck-and-car", "tenant_id": T, "severity": "high", "kind": "join", "within_s": 120,
     "geofence_id": "depot", "left": {"event_type": "ENTER", "entity_prefix": "truck-"},
     "right": {"event_type": "ENTER", "entity_glob": "car-*", "attributes": {"registered": "false"}}},
    {"pattern_id": "teleport", "tenant_id": T, "severity": "warning", "kind": "speed", "max_speed_kmh": 300},
    {"pattern_id": "long-stay", "tenant_id": T, "severity": "warning", "kind": "dwell_outlier", "min_samples": 20},
    {"pattern_id": "rush", "tenant_id": T, "severity": "info", "kind": "rate_outlier", "window_s": 60,
     "geofence_id": "gate", "min_windows": 10},
]


def geofence_records(t0: int) -> list[dict]:
    """Seeded: trucks and cars at the depot, visits to three docks (two absurdly long), and
    entries at the gate with two rushes. Event-time order."""
    rnd, out = random.Random(11), []

    def ev(etype, entity, gid, ts, **attrs):
        out.append({"event_id": f"{gid}-{entity}-{etype}-{ts}", "event_type": etype, "entity_id": entity,
                    "geofence_id": gid, "geofence_version": 1, "tenant_id": T, "lon": 13.4, "lat": 52.5,
                    "ts_ms": ts, "source": "test", "reason": None, "produced_ms": None, "attributes": attrs})

    for i in range(30):  # the depot: every 40 s a truck or a car (some registered)
        ts = t0 + i * 40_000
        if i % 3 == 0:
            ev("ENTER", f"truck-{i}", "depot", ts)
        else:
            ev("ENTER", f"car-{i}", "depot", ts, registered="false" if i % 3 == 1 else "true")
    for d in range(3):  # docks: 40 visits each, dwell log-normal around 5 min; visit 30 of docks 0, 1 lasts 2 h
        ts = t0
        for v in range(40):
            ts += rnd.randrange(20_000, 60_000)
            dwell = 7_200_000 if v == 30 and d < 2 else int(300_000 * math.exp(rnd.gauss(0, 0.3)))
            ev("ENTER", f"lorry-{d}-{v}", f"dock-{d}", ts)
            ev("EXIT", f"lorry-{d}-{v}", f"dock-{d}", ts + dwell)
    for w in range(40):  # the gate: about 4 entries a minute; rushes of 40 in minutes 20 and 33
        n = 40 if w in (20, 33) else rnd.randrange(2, 7)
        for k in range(n):
            ev("ENTER", f"van-{w}-{k}", "gate", t0 + w * 60_000 + rnd.randrange(60_000))
    return sorted(out, key=lambda e: e["ts_ms"])


def location_records(t0: int) -> list[dict]:
    """Five vehicles reporting every 10 s for 20 min at about 50 km/h; two of them teleport."""
    rnd, out = random.Random(12), []
    for n in range(5):
        lon, lat = 13.3 + n * 0.02, 52.5
        for i in range(120):
            lon += 0.002 + rnd.uniform(-0.0002, 0.0002)  # ~140 m per 10 s
            if (n, i) in ((1, 60), (3, 90)):
                lon += 1.0  # ~68 km in 10 s
            out.append({"entity_id": f"veh-{n}", "tenant_id": T, "lon": lon, "lat": lat, "ts_ms": t0 + i * 10_000,
                        "attributes": {}, "produced_ms": None})
    return sorted(out, key=lambda r: r["ts_ms"])


def uninterrupted(events: list[dict], locations: list[dict]) -> dict[str, tuple]:
    """The same engine over the same records, in-process, no restarts: each key's records in
    order, then every timer run out."""
    patterns = [parse_pattern(p) for p in PATTERNS]
    ids: dict[str, tuple] = {}
    for mode, records, subject in (("geofence", events, "geofence_id"), ("entity", locations, "entity_id")):
        engine = Engine(PatternTable([p for p in patterns if p.keyed_by == mode]))
        states: dict[str, KeyState] = {}
        for r in records:
            ks = states.setdefault(r[subject], KeyState(T, r[subject]))
            got = engine.on_location(ks, r)[0] if mode == "entity" else engine.on_event(ks, r)[0]
            ids.update({m.match_id: (m.pattern.pattern_id, m.key, m.start_ms) for m in got})
        for ks in states.values():
            ids.update({m.match_id: (m.pattern.pattern_id, m.key, m.start_ms) for m in engine.on_tick(ks, 10**13)})
    return ids


def publish(settings, codec, events: list[dict], locations: list[dict]) -> None:
    t_ev, t_loc = topic("geo.geofence-events", settings), topic("geo.locations", settings)
    producer = ReliableProducer(settings)
    for e in events:
        producer.send(t_ev, codec.encode(t_ev, "GeofenceEvent", e), key=e["geofence_id"])
    for r in locations:
        producer.send(t_loc, codec.encode(t_loc, "LocationUpdate", r), key=r["entity_id"])
    producer.flush_or_raise()


def test_new_kinds_survive_sigkill_with_the_uninterrupted_runs_matches(kafka_settings, tmp_path):
    codec = AvroCodec()
    t0 = int(time.time() * 1000) - 4 * 3_600_000
    t0 -= t0 % 60_000
    events, locations = geofence_records(t0), location_records(t0)
    expected = uninterrupted(events, locations)
    kinds = {p["pattern_id"]: p["kind"] for p in PATTERNS}
    put_patterns(kafka_settings, codec, PATTERNS)
    matches = EventCollector(kafka_settings, codec, "geo.cep-matches", "CepMatch")
    procs = start_cep(kafka_settings, tmp_path, ("entity", "geofence"))
    try:
        half_e, half_l = len(events) // 2, len(locations) // 2
        publish(kafka_settings, codec, events[:half_e], locations[:half_l])
        # mid-window: some matches out, joins and windows and baselines half-way
        wait_for(lambda: len(matches.snapshot()) >= 3, 90, what="the first matches")
        restart_cep(kafka_settings, procs, tmp_path, ("entity", "geofence"), "-2")
        publish(kafka_settings, codec, events[half_e:], locations[half_l:])

        def seen() -> set[str]:
            return {m["match_id"] for m in matches.snapshot()}

        try:
            wait_for(lambda: seen() >= set(expected), 120, what="every match of the uninterrupted run")
        except AssertionError:
            missing = sorted(expected[i] for i in set(expected) - seen())
            extra = sorted((m["pattern_id"], m["key"], m["start_ms"]) for m in matches.snapshot()
                           if m["match_id"] not in expected)
            raise AssertionError(f"missing {missing} of {len(expected)}; extra {extra}") from None
        time.sleep(3)  # anything extra would have shown by now: the inputs are consumed
        records = matches.snapshot()
        assert seen() == set(expected)
        assert len(records) == len(expected)  # exactly once: aborted transactions are never read
        by_kind = {}
        for m in records:
            by_kind.setdefault(kinds[m["pattern_id"]], []).append(m)
        assert set(by_kind) == {"join", "speed", "dwell_outlier", "rate_outlier"}
        assert {m["detail"]["entity_id"] for m in by_kind["speed"]} == {"veh-1", "veh-3"}
        assert {m["detail"]["geofence_id"] for m in by_kind["dwell_outlier"]} == {"dock-0", "dock-1"}
        assert sorted(int(m["detail"]["window_start_ms"]) for m in by_kind["rate_outlier"]) == [
            t0 + 20 * 60_000, t0 + 33 * 60_000]
        for m in by_kind["join"]:
            assert m["detail"]["left_entity"].startswith("truck-") and m["detail"]["right_entity"].startswith("car-")
    finally:
        for p in procs.values():
            stop(p)
        matches.close()
    assert tracebacks(tmp_path) == []
