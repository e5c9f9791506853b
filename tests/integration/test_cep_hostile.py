"""Hostile ids through Kafka: geofences called `max`, `held`, `wm`, `late`, unicode, 200
characters, `|` and `/`, used by two tenants with the same pattern, entity and geofence ids.
The CEP stages survive, match correctly per tenant, and a SIGKILL between the two halves of
every match restarts cleanly from the changelog (the second half only matches if the first
survived)."""

import time

import pytest

from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.cep_helpers import put_patterns, restart_cep, start_cep, tracebacks
from tests.integration.geo_helpers import EventCollector, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

HOSTILE = ["max", "held", "wm", "late", "by", "*", "zone|7", "a/b", "acme/zone", "Zoné-東京-🚚",
           "x" * 200, "|", "/"]
TENANTS = ("acme", "globex")
PATTERNS = [{"pattern_id": f"twice-{per}", "tenant_id": tenant, "severity": "info", "kind": "count",
             "within_s": 3600, "at_least": 2, "per": per, "lateness_s": 1,
             "event": {"event_type": "EXIT"}} for tenant in TENANTS for per in ("entity", "geofence")]


def visits(round_: int, t0: int) -> list[dict]:
    """Per tenant and hostile fence: truck-1 (in both tenants) enters and leaves once. A round
    spans less event time than the patterns' lateness: its fences are spread over the input
    partitions, which become readable one by one, and this test is about ids and restarts,
    not about how far the re-key's merge reaches (`tests/unit/test_cep.py` is)."""
    out = []
    for tenant in TENANTS:
        for n, gid in enumerate(HOSTILE):
            for k, etype in enumerate(("ENTER", "EXIT")):
                e = geofence_event(1000 * round_ + 10 * n + k, tenant, etype, "truck-1", gid)
                out.append(dict(e, ts_ms=t0 + 20_000 * round_ + 50 * n + k))
    return out


def test_hostile_ids_match_per_tenant_and_restart_cleanly(kafka_settings, tmp_path):
    codec = AvroCodec()
    put_patterns(kafka_settings, codec, PATTERNS)
    matches = EventCollector(kafka_settings, codec, "geo.cep-matches", "CepMatch")
    state = EventCollector(kafka_settings, codec, "geo.cep-state", "CepState")
    fence_state = EventCollector(kafka_settings, codec, "geo.cep-geofence-state", "CepState")
    dead = EventCollector(kafka_settings, codec, "geo.cep.dlq", "DlqRecord")
    procs = start_cep(kafka_settings, tmp_path)
    t0 = int(time.time() * 1000) - 60_000
    first = visits(0, t0)
    try:
        publish_events(kafka_settings, codec, first)
        exit_ids = [e["event_id"] for e in first if e["event_type"] == "EXIT"]

        def committed(collector) -> str:
            return "".join(r["patterns"] for r in {r["key"]: r for r in collector.snapshot()}.values())

        # every first EXIT is in committed state; then kill the stateful stages
        wait_for(lambda: all(i in committed(state) for i in exit_ids), 60, what="entity state")
        wait_for(lambda: all(i in committed(fence_state) for i in exit_ids), 60, what="geofence state")
        assert matches.snapshot() == []
        restart_cep(kafka_settings, procs, tmp_path, ("entity", "geofence"), "-2")
        publish_events(kafka_settings, codec, visits(1, t0))
        expected = {(t, "twice-entity", f"truck-1|{g}") for t in TENANTS for g in HOSTILE} | {
            (t, "twice-geofence", g) for t in TENANTS for g in HOSTILE}

        def found():
            return {(m["tenant_id"], m["pattern_id"], m["key"]) for m in matches.snapshot()}

        try:
            wait_for(lambda: found() >= expected, 90, what="every hostile fence's match")
        except AssertionError:
            raise AssertionError(f"missing {sorted(expected - found())[:5]}; dead letters: "
                                 f"{[(d['error_class'], d['error_message']) for d in dead.snapshot()][:5]}") from None
        by_id = {m["match_id"]: m for m in matches.snapshot()}
        assert len(by_id) == len(expected)  # match ids differ across tenants
        for m in by_id.values():
            assert m["detail"]["geofence_id"] in HOSTILE and m["detail"]["count"] == "2"
        assert all(p.poll() is None for p in procs.values()), "a CEP stage died"
    finally:
        for p in procs.values():
            stop(p)
        for c in (matches, state, fence_state, dead):
            c.close()
    assert tracebacks(tmp_path) == []
