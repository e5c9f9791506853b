"""Invariants 1-4 under SIGKILL: a few hundred entities through ~1,000 geofences, the worker
killed three times mid-stream. The de-duplicated events must equal the sequence computed
independently from the trajectories (plain shapely, tests/scenario.py)."""

import random
from collections import defaultdict

import pytest

from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.geo_helpers import (EventCollector, kill, lag_is_zero, publish_fences,
                                           publish_locations, start_worker, stop)
from tests.scenario import make_scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def check_against_expectation(records, expected):
    unique = {}
    for r in records:
        unique.setdefault(r["event_id"], r)
    got = defaultdict(list)
    for r in records:  # read order; duplicates (if any) dropped by id as a consumer would
        if unique.get(r["event_id"]) is r:
            got[(r["entity_id"], r["geofence_id"])].append((r["event_type"], r["ts_ms"]))
    assert dict(got) == expected
    for pair, seq in got.items():
        kinds = [k for k, _ in seq]
        assert kinds[0] == "ENTER" and all(a != b for a, b in zip(kinds, kinds[1:])), pair
        assert [ts for _, ts in seq] == sorted(ts for _, ts in seq), f"order broken for {pair}"


@pytest.mark.parametrize("kafka_settings,workers", [(4, 1), (4, 2)], indirect=["kafka_settings"],
                         ids=["one-worker", "two-workers"])
def test_sigkill_three_times_loses_and_duplicates_nothing(kafka_settings, workers, tmp_path):
    rnd = random.Random(workers)
    codec = AvroCodec()
    scenario = make_scenario(n_fences=1000, n_entities=300, steps=40, seed=11)
    expected = scenario.expected()
    n_expected = sum(len(v) for v in expected.values())
    registry = publish_fences(kafka_settings, scenario.features(), codec)
    events = EventCollector(kafka_settings, codec)
    procs = {str(i): start_worker(kafka_settings, str(i), tmp_path) for i in range(workers)}
    rows = [(e, lon, lat, ts) for step in range(40) for e, track in scenario.tracks.items()
            for lon, lat, ts in [track[step]]]
    waves = [rows[i * len(rows) // 4:(i + 1) * len(rows) // 4] for i in range(4)]
    try:
        for wave_no, wave in enumerate(waves):
            before = len(events.unique_ids())
            publish_locations(kafka_settings, codec, wave)
            if wave_no == 3:
                break
            # kill once some of this wave's events are out, at a slightly random point
            threshold = before + rnd.randint(20, 120)
            wait_for(lambda: len(events.unique_ids()) >= threshold, 120,
                     what=f"events of wave {wave_no}")
            victim = rnd.choice(sorted(procs))
            kill(procs[victim])
            procs[victim] = start_worker(kafka_settings, victim, tmp_path)
        wait_for(lambda: len(events.unique_ids()) >= n_expected, 180,
                 what=f"{n_expected} distinct events")
        # and nothing more arrives: wait until every worker's group has caught up
        wait_for(lambda: lag_is_zero(kafka_settings), 60, what="consumer lag 0")
        records = events.snapshot()
        check_against_expectation(records, expected)
        duplicates = len(records) - len({r["event_id"] for r in records})
        assert duplicates == 0, f"{duplicates} duplicate events reached a read_committed consumer"
    finally:
        for p in procs.values():
            stop(p)
        events.close()
        registry.close()

