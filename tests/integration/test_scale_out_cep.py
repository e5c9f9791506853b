"""CEP scale-out, proven (issue 16): two instances of each CEP stage (re-key, entity,
geofence) share six partitions while geofence events flow; an entity and a geofence instance
are SIGKILLed mid-window and started again, and a third entity instance joins. The matches,
de-duplicated by id, must be exactly the ones the scripted histories call for — per entity a
sequence, an absence (a timer: read from the restored store after every move) and a count; per
geofence a convoy — and a read_committed consumer must see none twice.

The expectation is written from the script, not computed by the engine: kind 0 enters A then B
two seconds later (a sequence, and the absence satisfied), kind 1 enters A only (the absence
fires), kind 2 leaves G three times (the count); three entities enter each fence V<k> a second
apart (one convoy of three per fence).
"""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from connectors.kafka_producer import ReliableProducer
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.cep_helpers import put_patterns
from tests.integration.geo_helpers import (
    EventCollector,
    kill,
    lag_is_zero,
    start_cli,
    stop,
)
from tests.integration.test_scale_out import log_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6
ENTITIES = 240
CONVOYS = 12  # fences V0..V11, three entities entering each
SPREAD_S = 30  # entity i starts its history at second i % SPREAD_S of the feed
TENANT = "t"
PATTERNS = [
    {"pattern_id": "a-then-b", "tenant_id": TENANT, "severity": "high", "kind": "sequence",
     "within_s": 30, "lateness_s": 2, "steps": [{"event_type": "ENTER", "geofence_id": "A"},
                                                {"event_type": "ENTER", "geofence_id": "B"}]},
    {"pattern_id": "no-b", "tenant_id": TENANT, "severity": "high", "kind": "absence", "within_s": 6,
     "trigger": {"event_type": "ENTER", "geofence_id": "A"}, "expected": {"event_type": "ENTER", "geofence_id": "B"}},
    {"pattern_id": "loiter", "tenant_id": TENANT, "severity": "info", "kind": "count", "within_s": 600,
     "at_least": 3, "event": {"event_type": "EXIT", "geofence_id": "G"}},
] + [{"pattern_id": f"convoy-V{k}", "tenant_id": TENANT, "severity": "high", "kind": "comovement",
      "within_s": 60, "at_least": 3, "geofence_id": f"V{k}"} for k in range(CONVOYS)]


def history(i: int) -> list[tuple[int, str, str]]:
    """(second of the feed, event type, geofence) of entity i."""
    s = i % SPREAD_S
    return {0: [(s, "ENTER", "A"), (s + 2, "ENTER", "B")],
            1: [(s, "ENTER", "A")],
            2: [(s, "EXIT", "G"), (s + 1, "EXIT", "G"), (s + 2, "EXIT", "G")]}[i % 3]


def convoy_history(k: int, j: int) -> list[tuple[int, str, str]]:
    return [((2 * k) % SPREAD_S + j, "ENTER", f"V{k}")]


def histories() -> dict[str, list[tuple[int, str, str]]]:
    out = {f"e{i}": history(i) for i in range(ENTITIES)}
    out.update({f"v{k}-{j}": convoy_history(k, j) for k in range(CONVOYS) for j in range(3)})
    return out


def expected_matches() -> set[tuple[str, str]]:
    out = {(f"convoy-V{k}", f"V{k}") for k in range(CONVOYS)}
    for i in range(ENTITIES):
        e = f"e{i}"
        out |= {0: {("a-then-b", e)}, 1: {("no-b", e)}, 2: {("loiter", f"{e}|G")}}[i % 3]
    return out


class EventFeed(threading.Thread):
    """Publishes each second's events at that second (event time = the feed's clock), so every
    move below happens while events flow and while timers are pending."""

    def __init__(self, settings, codec: AvroCodec) -> None:
        super().__init__(daemon=True)
        self.settings, self.codec = settings, codec
        self.seconds = SPREAD_S + 3
        self.second = -1
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            t = topic("geo.geofence-events", self.settings)
            producer = ReliableProducer(self.settings)
            by_second: dict[int, list] = {}
            for entity, steps in histories().items():
                for n, (sec, kind, gid) in enumerate(steps):
                    by_second.setdefault(sec, []).append((entity, n, kind, gid))
            t0 = int(time.time() * 1000)
            for sec in range(self.seconds):
                for entity, n, kind, gid in by_second.get(sec, []):
                    ev = {"event_id": hashlib.sha256(f"{entity}/{n}".encode()).hexdigest()[:32],
                          "event_type": kind, "entity_id": entity, "geofence_id": gid, "geofence_version": 1,
                          "tenant_id": TENANT, "lon": 1.0, "lat": 2.0, "ts_ms": t0 + sec * 1000,
                          "source": f"scale-out:{entity}:{n}", "reason": None, "produced_ms": None,
                          "attributes": {}}
                    producer.send(t, self.codec.encode(t, "GeofenceEvent", ev), key=gid)
                producer.flush_or_raise()
                self.second = sec
                ahead = t0 / 1000 + sec + 1 - time.time()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the feed to event time, not waiting for a condition
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc

    def reached(self, second: int) -> bool:
        if self.error is not None:
            raise AssertionError(f"the feed failed: {self.error!r}")
        return self.second >= second


def assigned(path) -> set[int]:
    out: set[int] = set()
    for ev in log_events(path):
        if ev.get("event") == "assigned":
            out = set(ev["partitions"])
        elif ev.get("event") == "revoked":
            out -= set(ev["partitions"])
    return out


@pytest.mark.parametrize("kafka_settings", [PARTITIONS], indirect=True)
def test_cep_instances_join_and_die_mid_window_without_loss_or_duplicates(kafka_settings, tmp_path):
    s, codec = kafka_settings, AvroCodec()
    put_patterns(s, codec, PATTERNS)
    matches = EventCollector(s, codec, "geo.cep-matches", "CepMatch")
    late = EventCollector(s, codec, "geo.cep.dlq", "DlqRecord")
    procs: dict[str, object] = {}
    logs = {i: tmp_path / f"cep-entity-{i}.log" for i in "012"}
    fence_logs = {i: tmp_path / f"cep-geofence-{i}.log" for i in "01"}

    def start(i: str, name: str | None = None, mode: str = "entity") -> None:
        procs[f"{mode}-{i}"] = start_cli(s, ["worker", "cep", "--mode", mode, "--instance", i],
                                         name or f"cep-{mode}-{i}", tmp_path, GEOFLUX_LOG_LEVEL="INFO")

    feed = EventFeed(s, codec)
    try:
        for mode in ("rekey", "geofence", "entity"):
            start("0", mode=mode)
            start("1", mode=mode)
        wait_for(lambda: assigned(logs["0"]) and assigned(logs["1"])
                 and len(assigned(logs["0"]) | assigned(logs["1"])) == PARTITIONS
                 and assigned(fence_logs["0"]) and assigned(fence_logs["1"]), 120,
                 what="two entity and two geofence instances sharing the partitions")
        feed.start()
        wait_for(lambda: feed.reached(SPREAD_S // 3), 60, what="a third of the feed")
        # mid-window: sequences half-seen, absences, counts and convoys pending
        kill(procs.pop("entity-1"))
        kill(procs.pop("geofence-1"))
        start("1", "cep-entity-1b")
        start("1", "cep-geofence-1b", mode="geofence")
        wait_for(lambda: feed.reached(2 * SPREAD_S // 3), 60, what="two thirds of the feed")
        start("2")  # added under load: partitions move to it with their partial matches
        feed.join(120)
        assert not feed.is_alive() and feed.error is None, feed.error
        want = expected_matches()

        def found() -> set[tuple[str, str]]:
            return {(m["pattern_id"], m["key"]) for m in matches.snapshot()}

        try:
            wait_for(lambda: found() >= want, 120, what="every expected match")
        except AssertionError:
            raise AssertionError(f"missing {sorted(want - found())[:20]}") from None
        for group, logical in (("geoflux-cep-rekey", "geo.geofence-events"), ("geoflux-cep-entity", "geo.cep-input"),
                               ("geoflux-cep-geofence", "geo.geofence-events")):
            wait_for(lambda g=group, t=logical: lag_is_zero(s, g, t), 90, what=f"{logical} consumed by {group}")
        records = matches.snapshot()
        assert found() == want, sorted(found() - want)[:20]  # nothing extra: no absence of a B that came
        assert len(records) == len({m["match_id"] for m in records}), "a match reached a read_committed consumer twice"
        assert len(records) == len(want)
        assert late.snapshot() == [], "no event was late: every instance move kept the clock"
        assert assigned(logs["2"]), "the added instance took partitions"
    finally:
        for p in procs.values():
            stop(p)
        matches.close()
        late.close()
