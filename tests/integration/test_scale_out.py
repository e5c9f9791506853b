"""Scale-out, proven (issue 16, item 5): evaluator instances sharing six partitions while the
feed runs. An instance is added, one is removed (SIGTERM), and a new one is SIGKILLed in the
middle of its restore and started again; meanwhile every instance keeps processing. The
de-duplicated geofence events must equal the sequence computed independently from the
trajectories (plain shapely, tests/scenario.py), and a read_committed consumer must see no
duplicate at all.

So that a restore lasts long enough to be interrupted, the changelog is seeded with the state
of FILLER entities of another tenant (never updated, in no fence): every full restore of a
partition reads ~FILLER/6 records of real EntityState bytes before it is done.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors.kafka_config import transactional_config
from connectors.kafka_producer import ReliableProducer
from geoflux.keys import scoped
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.evaluator_records import state_to_record
from streams.membership import EntityState
from tests.conftest import wait_for
from tests.integration.geo_helpers import (EventCollector, kill, lag_is_zero, publish_fences,
                                           start_cli, stop)
from tests.integration.test_evaluator_faults import check_against_expectation
from tests.scenario import make_scenario

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6
FILLER = 90_000
STEPS = 40


def seed_filler(settings, codec: AvroCodec, n: int) -> None:
    """Settled entities of tenant `filler` on the changelog, committed in transactions as an
    evaluator commits them, partitioned as the evaluator's input is (murmur2 on the key)."""
    t = topic("geo.evaluator-state", settings)
    p = Producer(transactional_config(settings, f"filler-{uuid.uuid4().hex[:8]}",
                                      **{"linger.ms": 20}))
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(n):
        value = codec.encode(t, "EntityState", state_to_record(EntityState(f"f{i}", "filler")))
        while True:
            try:
                p.produce(t, value, key=scoped("filler", f"f{i}"))
                break
            except BufferError:
                p.poll(0.05)
        if (i + 1) % 5000 == 0:
            p.commit_transaction(60)
            p.begin_transaction()
    p.commit_transaction(60)


class Feed(threading.Thread):
    """Publishes the scenario step by step at a steady pace, so every membership change below
    happens while updates flow."""

    def __init__(self, settings, codec: AvroCodec, rows: list, per_s: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.codec, self.rows, self.per_s = settings, codec, rows, per_s
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            t = topic("geo.locations", self.settings)
            producer = ReliableProducer(self.settings)
            t0, chunk = time.monotonic(), 50
            for start in range(0, len(self.rows), chunk):
                for entity, lon, lat, ts in self.rows[start:start + chunk]:
                    rec = {"entity_id": entity, "tenant_id": "t", "lon": lon, "lat": lat, "ts_ms": ts,
                           "attributes": {}, "produced_ms": int(time.time() * 1000)}
                    producer.send(t, self.codec.encode(t, "LocationUpdate", rec), key=scoped("t", entity))
                producer.flush_or_raise()
                self.sent = min(len(self.rows), start + chunk)
                ahead = self.sent / self.per_s - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)  # pacing the feed, not waiting for a condition
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def reached(self, fraction: float) -> bool:
        if self.error is not None:
            raise AssertionError(f"the feed failed: {self.error!r}")
        return self.sent >= fraction * len(self.rows)


def log_events(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # librdkafka's own lines
    return out


def restores(path: Path) -> tuple[set[int], set[int]]:
    """(partitions whose restore began, partitions restored) in an instance's log."""
    began, done = set(), set()
    for ev in log_events(path):
        if ev.get("stage") == "evaluator" and ev.get("event") == "restoring":
            began.add(ev["partition"])
        elif ev.get("stage") == "evaluator" and ev.get("event") == "restored":
            done.add(ev["partition"])
    return began, done


@pytest.mark.parametrize("kafka_settings", [PARTITIONS], indirect=True)
def test_instances_join_leave_and_die_mid_restore_without_loss_or_duplicates(kafka_settings, tmp_path):
    s, codec = kafka_settings, AvroCodec()
    scenario = make_scenario(n_fences=600, n_entities=300, steps=STEPS, seed=16)
    expected = scenario.expected()
    n_expected = sum(len(v) for v in expected.values())
    registry = publish_fences(s, scenario.features(), codec)
    seed_filler(s, codec, FILLER)
    events = EventCollector(s, codec)
    rows = [(e, lon, lat, ts) for step in range(STEPS) for e, track in scenario.tracks.items()
            for lon, lat, ts in [track[step]]]
    procs: dict[str, object] = {}
    logs = {i: tmp_path / f"evaluator-{i}.log" for i in "0123"}

    def start(i: str, **env) -> None:
        procs[i] = start_cli(s, ["worker", "evaluator", "--instance", i], f"evaluator-{i}", tmp_path,
                             GEOFLUX_LOG_LEVEL="INFO", **env)

    feed = Feed(s, codec, rows, per_s=150)
    try:
        start("0")
        start("1")
        wait_for(lambda: len(restores(logs["0"])[1] | restores(logs["1"])[1]) == PARTITIONS, 120,
                 what="the first two instances restored every partition")
        feed.start()

        wait_for(lambda: feed.reached(0.15), 60, what="15% of the feed")
        start("2")  # added under load: partitions move to it and are restored there in full
        wait_for(lambda: restores(logs["2"])[1], 90, what="instance 2 restored its partitions")

        wait_for(lambda: feed.reached(0.35), 90, what="35% of the feed")
        stop(procs.pop("1"))  # removed under load: its partitions go back to 0 and 2

        wait_for(lambda: feed.reached(0.5), 90, what="half of the feed")
        # a new instance with an empty store, SIGKILLed while it restores
        start("3", GEOFLUX_STREAM_RESTORE_BATCH="200")
        # a restore of ~15,000 records per partition takes a few tenths of a second: look often
        wait_for(lambda: restores(logs["3"])[0], 90, interval_s=0.01, what="instance 3 began restoring")
        kill(procs.pop("3"))
        began, done = restores(logs["3"])
        assert began - done, f"instance 3 finished restoring {sorted(done)} before it was killed"
        start("3")  # again, on whatever store and checkpoint its killed predecessor left

        feed.join(180)
        assert not feed.is_alive() and feed.error is None, feed.error
        wait_for(lambda: len(events.unique_ids()) >= n_expected, 180, what=f"{n_expected} distinct events")
        wait_for(lambda: lag_is_zero(s), 90, what="consumer lag 0")
        records = events.snapshot()
        check_against_expectation(records, expected)
        duplicates = len(records) - len({r["event_id"] for r in records})
        assert duplicates == 0, f"{duplicates} duplicate events reached a read_committed consumer"
        # the survivors share the work: every instance left standing comes to own a part of it
        # (lag can reach 0 while the restarted instance still restores what it was given)
        wait_for(lambda: all(restores(logs[i])[1] for i in ("0", "2", "3")), 90,
                 what="every instance left standing restored a partition")
        assert [i for i in ("0", "2", "3") if procs[i].poll() is not None] == [], "an instance exited"
    finally:
        for p in procs.values():
            stop(p)
        events.close()
        registry.close()
