"""CEP scale-out, proven (issue 16): two CEP entity instances share six partitions while
geofence events flow; one is SIGKILLed mid-window and started again, a third joins. The
matches, de-duplicated by id, must be exactly the ones the scripted histories call for — a
sequence, an absence (a timer: read from the restored store after every move) and a count per
entity — and a read_committed consumer must see none twice.

The expectation is written from the script, not computed by the engine: kind 0 enters A then B
two seconds later (a sequence, and the absence satisfied), kind 1 enters A only (the absence
fires), kind 2 leaves G three times (the count).
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
from tests.integration.geo_helpers import EventCollector, kill, lag_is_zero, start_cli, stop
from tests.integration.test_scale_out import log_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 6
ENTITIES = 240
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
]


def history(i: int) -> list[tuple[int, str, str]]:
    """(second of the feed, event type, geofence) of entity i."""
    s = i % SPREAD_S
    return {0: [(s, "ENTER", "A"), (s + 2, "ENTER", "B")],
            1: [(s, "ENTER", "A")],
            2: [(s, "EXIT", "G"), (s + 1, "EXIT", "G"), (s + 2, "EXIT", "G")]}[i % 3]


def expected_matches() -> set[tuple[str, str]]:
    out = set()
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
            for i in range(ENTITIES):
                for n, (sec, kind, gid) in enumerate(history(i)):
                    by_second.setdefault(sec, []).append((f"e{i}", n, kind, gid))
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
        except BaseException as exc:  # reported by the test
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
    procs: dict[str, object] = {"rekey": start_cli(s, ["worker", "cep", "--mode", "rekey"], "cep-rekey", tmp_path)}
    logs = {i: tmp_path / f"cep-entity-{i}.log" for i in "012"}

    def start(i: str, name: str | None = None) -> None:
        procs[i] = start_cli(s, ["worker", "cep", "--mode", "entity", "--instance", i],
                             name or f"cep-entity-{i}", tmp_path, GEOFLUX_LOG_LEVEL="INFO")

    feed = EventFeed(s, codec)
    try:
        start("0")
        start("1")
        wait_for(lambda: assigned(logs["0"]) and assigned(logs["1"])
                 and len(assigned(logs["0"]) | assigned(logs["1"])) == PARTITIONS, 120,
                 what="both entity instances sharing the partitions")
        feed.start()
        wait_for(lambda: feed.reached(SPREAD_S // 3), 60, what="a third of the feed")
        kill(procs.pop("1"))  # mid-window: sequences half-seen, absences and counts pending
        start("1", "cep-entity-1b")
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
        wait_for(lambda: lag_is_zero(s, "geoflux-cep-entity", "geo.cep-input"), 90, what="CEP input consumed")
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
