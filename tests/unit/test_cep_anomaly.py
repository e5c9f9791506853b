"""Anomaly kinds on generated data whose anomalies are known (seeded): every injected anomaly
is found, nothing else is, a clean set raises nothing, and each false-positive guard is shown
to matter (switched off, the clean set fires)."""

import math
import random

import pytest

from geoflux.errors import ValidationError
from streams.cep.engine import Engine
from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState
from streams.cep.kinds.stats import distance_m, ewma_add, welford_add, welford_std
from streams.cep.patterns import parse_pattern

BERLIN = (13.40, 52.52)


def pattern(kind, **body):
    return parse_pattern({"pattern_id": kind, "tenant_id": "t", "severity": "warning", "kind": kind, **body})


def offset(lon, lat, east_m, north_m):
    return lon + east_m / (111_320 * math.cos(math.radians(lat))), lat + north_m / 110_540


# -- speed ----------------------------------------------------------------------------------

def trajectories(seed: int, entities: int = 40, points: int = 300, inject: bool = True):
    """Vehicles at 20-100 km/h, updates every 5-30 s with 8 m GPS noise, and every ~20 updates
    a burst (a second update 0.3 s later: jitter that implies absurd speeds over a few
    metres). Injected: teleports (a jump of 50-200 km, the track continues from there) and
    spikes (one point 5-30 km off, the next back). Returns ({entity: [(ts, lon, lat)]},
    {entity: set of (from_ts, to_ts) pairs an anomaly explains})."""
    rnd = random.Random(seed)
    tracks, known = {}, {}
    for n in range(entities):
        lon, lat = offset(*BERLIN, rnd.uniform(-20_000, 20_000), rnd.uniform(-20_000, 20_000))
        ts, heading, pts = 1_700_000_000_000 + rnd.randrange(60_000), rnd.uniform(0, 2 * math.pi), []
        for _ in range(points):
            dt = rnd.uniform(5, 30)
            speed = rnd.uniform(20, 100) / 3.6
            heading += rnd.gauss(0, 0.3)
            lon, lat = offset(lon, lat, speed * dt * math.sin(heading), speed * dt * math.cos(heading))
            ts += int(dt * 1000)
            pts.append((ts, *offset(lon, lat, rnd.gauss(0, 8), rnd.gauss(0, 8))))
            if rnd.random() < 0.05:  # a burst: the same position reported again 0.3 s later
                pts.append((ts + 300, *offset(lon, lat, rnd.gauss(0, 8), rnd.gauss(0, 8))))
                ts += 300
        entity, pairs = f"veh-{n}", set()
        if inject and n % 4 == 1:  # teleport
            k = rnd.randrange(50, points - 50)
            jump = (rnd.uniform(50_000, 200_000), rnd.uniform(-50_000, 50_000))
            pts = pts[:k] + [(t, *offset(x, y, *jump)) for t, x, y in pts[k:]]
            pairs = {(pts[k - 1][0], pts[k][0])}
        elif inject and n % 4 == 2:  # spike
            k = rnd.randrange(50, points - 50)
            t, x, y = pts[k]
            pts[k] = (t, *offset(x, y, rnd.uniform(5_000, 30_000), rnd.uniform(-5_000, 5_000)))
            pairs = {(pts[k - 1][0], t), (t, pts[k + 1][0])}
        tracks[entity], known[entity] = pts, pairs
    return tracks, known


def speed_matches(p, tracks, shuffle_seed=None, restart_every=0):
    engine, found = Engine(PatternTable([p])), {}
    for entity, pts in tracks.items():
        order = list(pts)
        if shuffle_seed is not None:  # neighbours swapped when at most the lateness apart
            rnd = random.Random(shuffle_seed)
            for i in range(len(order) - 1):
                if order[i + 1][0] - order[i][0] <= 5_000 and rnd.random() < 0.5:
                    order[i], order[i + 1] = order[i + 1], order[i]
        ks, got = KeyState("t", entity), []
        for i, (ts, lon, lat) in enumerate(order):
            got += engine.on_location(ks, {"ts_ms": ts, "lon": lon, "lat": lat, "entity_id": entity})[0]
            if restart_every and i % restart_every == 0:
                ks = KeyState.from_json("t", entity, ks.to_json())
        got += engine.on_tick(ks, 10**13)
        found[entity] = {(m.start_ms, m.end_ms) for m in got}
        for m in got:
            assert float(m.detail["speed_kmh"]) > 250 and m.detail["entity_id"] == entity
    return found


SPEED = pattern("speed", max_speed_kmh=250)


def test_speed_finds_every_teleport_and_gps_spike_and_nothing_else():
    tracks, known = trajectories(seed=1)
    found = speed_matches(SPEED, tracks)
    injected = [e for e, pairs in known.items() if pairs]
    assert len(injected) == 20
    assert all(found[e] for e in injected)  # recall: every anomaly found
    assert all(found[e] <= known[e] for e in tracks)  # precision: every match explained
    assert sum(len(found[e]) for e in tracks) == sum(len(known[e]) for e in tracks)


def test_speed_clean_set_is_silent_and_the_jitter_guard_is_what_keeps_it_so():
    tracks, _ = trajectories(seed=2, inject=False)
    assert sum(len(f) for f in speed_matches(SPEED, tracks).values()) == 0
    unguarded = pattern("speed", max_speed_kmh=250, min_distance_m=0)
    assert sum(len(f) for f in speed_matches(unguarded, tracks).values()) > 10  # bursts 0.3 s apart


def test_speed_is_on_event_time_durable_and_explained():
    tracks, known = trajectories(seed=3)
    in_order = speed_matches(SPEED, tracks)
    assert speed_matches(SPEED, tracks, shuffle_seed=7) == in_order
    assert speed_matches(SPEED, tracks, shuffle_seed=7, restart_every=13) == in_order
    engine, ks = Engine(PatternTable([SPEED])), KeyState("t", "v")
    for ts, lon in ((0, 13.0), (10_000, 13.0), (20_000, 14.0)):  # ~68 km in 10 s
        out = engine.on_location(ks, {"ts_ms": ts, "lon": lon, "lat": 52.5, "entity_id": "v"})[0]
    out += engine.on_tick(ks, 10**13)
    (m,) = out
    assert (m.start_ms, m.end_ms, m.event_ids) == (10_000, 20_000, ("loc:10000", "loc:20000"))
    assert m.detail["seconds"] == "10" and 67_000 < float(m.detail["distance_m"]) < 69_000
    assert 24_000 < float(m.detail["speed_kmh"]) < 25_000 and m.detail["limit_kmh"] == "250"


def test_a_location_older_than_the_watermark_is_late():
    engine, ks = Engine(PatternTable([SPEED])), KeyState("t", "v")
    engine.on_location(ks, {"ts_ms": 100_000, "lon": 13.0, "lat": 52.5, "entity_id": "v"})
    assert engine.on_location(ks, {"ts_ms": 94_999, "lon": 13.0, "lat": 52.5, "entity_id": "v"})[1] == ["speed"]
    assert engine.on_location(ks, {"ts_ms": 95_000, "lon": 13.0, "lat": 52.5, "entity_id": "v"})[1] == []


# -- dwell_outlier --------------------------------------------------------------------------

def visits(seed: int, fences: int = 10, per_fence: int = 400, inject: int = 5):
    """Per fence: log-normal dwells (median 2-60 min, sigma 0.3-1.0); injected, after the
    first 60 visits, `inject` dwells exp(7 sigma) times the median (long). Returns the events
    of each fence in time order and the ids of the injected EXITs."""
    rnd = random.Random(seed)
    streams, known = {}, set()
    for f in range(fences):
        gid, median, sigma = f"fence-{f}", rnd.uniform(120, 3600), rnd.uniform(0.3, 1.0)
        odd = set(rnd.sample(range(60, per_fence), inject)) if inject else set()
        t, events = 1_700_000_000_000, []
        for i in range(per_fence):
            t += int(rnd.expovariate(1 / 300) * 1000)
            dwell = median * math.exp(sigma * (7 if i in odd else rnd.gauss(0, 1)))
            entity = f"e{f}-{i}"
            events.append({"event_id": f"{gid}-in-{i}", "event_type": "ENTER", "geofence_id": gid, "ts_ms": t,
                           "entity_id": entity, "lon": 0.0, "lat": 0.0, "attributes": {}})
            events.append({"event_id": f"{gid}-out-{i}", "event_type": "EXIT", "geofence_id": gid,
                           "ts_ms": t + int(dwell * 1000), "entity_id": entity, "lon": 0.0, "lat": 0.0,
                           "attributes": {}})
            if i in odd:
                known.add(f"{gid}-out-{i}")
        streams[gid] = sorted(events, key=lambda e: e["ts_ms"])
    return streams, known


def run_fences(p, streams, restart_every=0):
    engine, found = Engine(PatternTable([p])), []
    for gid, events in streams.items():
        ks = KeyState("t", gid)
        for i, e in enumerate(events):
            found += engine.on_event(ks, e)[0]
            if restart_every and i % restart_every == 0:
                ks = KeyState.from_json("t", gid, ks.to_json())
        found += engine.on_tick(ks, 10**13)
    return found


DWELL = pattern("dwell_outlier")


def test_dwell_outlier_finds_every_injected_dwell_and_nothing_else():
    streams, known = visits(seed=4)
    found = run_fences(DWELL, streams, restart_every=17)
    assert len(known) == 50
    assert {m.event_ids[1] for m in found} == known  # recall and precision, 10 fences
    m = found[0]
    assert m.detail["direction"] == "long" and float(m.detail["z"]) > 4 and int(m.detail["samples"]) >= 30
    assert float(m.detail["dwell_s"]) > 2 * float(m.detail["typical_dwell_s"])


def test_dwell_outlier_clean_set_is_silent_and_its_guards_matter():
    streams, _ = visits(seed=5, inject=0)
    assert run_fences(DWELL, streams) == []
    assert run_fences(pattern("dwell_outlier", z=2, min_ratio=1), streams)  # no guard: it fires


def test_dwell_outlier_waits_for_its_minimum_sample():
    streams, _ = visits(seed=6, fences=1, per_fence=40, inject=0)
    events = streams["fence-0"]
    long_exit = dict(events[-1], ts_ms=events[-1]["ts_ms"] + 10**9)  # a dwell of 11 days, at visit 40
    stream = {"fence-0": events[:-1] + [long_exit]}
    assert run_fences(pattern("dwell_outlier", min_samples=100), stream) == []
    assert len(run_fences(pattern("dwell_outlier", min_samples=30), stream)) == 1


# -- rate_outlier ---------------------------------------------------------------------------

def entries(seed: int, fences: int = 10, windows: int = 300, inject: int = 5):
    """Per fence: Poisson entries per 60 s window (mean 0.5-20); injected, after window 50,
    `inject` surges of mean + 8 sqrt(mean) + 10 extra entries. Returns each fence's ENTERs in
    time order, and the injected (fence, window start) pairs."""
    rnd = random.Random(seed)
    streams, known = {}, set()
    for f in range(fences):
        gid, lam = f"fence-{f}", rnd.uniform(0.5, 20)
        odd = set(rnd.sample(range(50, windows), inject)) if inject else set()
        t0, events = 1_700_000_020_000 - 1_700_000_020_000 % 60_000, []
        for w in range(windows):
            n = _poisson(rnd, lam) + (math.ceil(lam + 8 * math.sqrt(lam) + 10) if w in odd else 0)
            start = t0 + w * 60_000
            for k in range(n):
                events.append({"event_id": f"{gid}-{w}-{k}", "event_type": "ENTER", "geofence_id": gid,
                               "ts_ms": start + rnd.randrange(60_000), "entity_id": f"e{w}-{k}", "lon": 0.0,
                               "lat": 0.0, "attributes": {}})
            if w in odd:
                known.add((gid, start))
        streams[gid] = sorted(events, key=lambda e: e["ts_ms"])
    return streams, known


def _poisson(rnd: random.Random, lam: float) -> int:
    n, p, limit = 0, 1.0, math.exp(-lam)
    while True:
        p *= rnd.random()
        if p <= limit:
            return n
        n += 1


RATE = pattern("rate_outlier", window_s=60)


def test_rate_outlier_finds_every_surge_and_nothing_else():
    streams, known = entries(seed=8)
    found = run_fences(RATE, streams, restart_every=29)
    assert len(known) == 50
    assert {(m.key, m.start_ms) for m in found} == known  # one match per surge window
    assert len(found) == len(known)
    m = found[0]
    assert int(m.detail["entries"]) > float(m.detail["threshold"]) >= 5 and int(m.detail["windows_seen"]) >= 12


def test_rate_outlier_clean_set_is_silent_and_its_guards_matter():
    streams, _ = entries(seed=9, inject=0)
    assert run_fences(RATE, streams) == []
    loose = pattern("rate_outlier", window_s=60, z=2, min_count=1, min_windows=1)
    assert len(run_fences(loose, streams)) > 10


def test_rate_outlier_counts_quiet_windows_and_closes_them_on_the_clock():
    p = pattern("rate_outlier", window_s=60, min_windows=3, min_count=3)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "G")

    def enter(i, ts):
        return engine.on_event(ks, {"event_id": f"x{i}", "event_type": "ENTER", "geofence_id": "G", "ts_ms": ts,
                                    "entity_id": f"e{i}", "lon": 0.0, "lat": 0.0, "attributes": {}})[0]

    enter(0, 10_000)  # one entry in the first window, then 10 quiet minutes
    assert engine.due(ks) == 60_000 + 5_000
    engine.on_tick(ks, 65_000)
    st = ks.patterns["rate_outlier"][1]
    assert st["s"][0] == 1 and st["w"] == []
    got = [enter(i, 660_000 + i) for i in range(1, 7)]
    assert st["s"][0] == 10  # the 9 quiet windows between counted, as 0 entries, before judging
    # mean ~0.47 after 1, 0, 0, ...: the threshold is the spread floor (1) times z (4) above it
    assert [len(g) for g in got] == [0, 0, 0, 0, 1, 0]  # the 5th entry crosses it, once per window
    assert got[4][0].detail["threshold"] == "4.47"


@pytest.mark.parametrize("body,reason", [
    ({"kind": "speed"}, "max_speed_kmh"),
    ({"kind": "speed", "max_speed_kmh": 100, "min_distance_m": -1}, "min_distance_m"),
    ({"kind": "dwell_outlier", "direction": "sideways"}, "direction"),
    ({"kind": "dwell_outlier", "min_samples": 2}, "min_samples"),
    ({"kind": "dwell_outlier", "z": 0}, "z must"),
    ({"kind": "rate_outlier"}, "window_s"),
    ({"kind": "rate_outlier", "window_s": 60, "min_count": 0}, "min_count"),
    ({"kind": "rate_outlier", "window_s": 60, "baseline_windows": 0.5}, "baseline_windows"),
])
def test_bad_anomaly_patterns_have_reasons(body, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_pattern({"pattern_id": "a", "tenant_id": "t", "severity": "info", **body})


def test_streaming_statistics():
    rnd = random.Random(1)
    xs = [rnd.gauss(10, 3) for _ in range(10_000)]
    s = [0, 0.0, 0.0]
    for x in xs:
        welford_add(s, x)
    mean = sum(xs) / len(xs)
    assert abs(s[1] - mean) < 1e-9
    assert abs(welford_std(s) - math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))) < 1e-9
    e = [0, 0.0, 0.0]
    for x in [5.0] * 200:
        ewma_add(e, x, 0.1)
    assert abs(e[1] - 5.0) < 1e-9 and e[2] < 1e-9
    assert 1110 < distance_m(0, 0, 0, 0.01) < 1112  # 0.01 degree of latitude
