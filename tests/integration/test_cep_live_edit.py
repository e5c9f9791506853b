"""Patterns edited while events flow: an edit of severity keeps the partial matches in flight
(the match completes after the edit, with the new version and severity); an edit of the steps
restarts the pattern's state (a half-finished sequence is not finished under new steps)."""

import time

import pytest

from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.cep_helpers import put_patterns, start_cep, tracebacks
from tests.integration.geo_helpers import EventCollector, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def seq(pid: str, second: str, severity: str = "info") -> dict:
    return {"pattern_id": pid, "tenant_id": "t", "severity": severity, "kind": "sequence", "within_s": 600,
            "lateness_s": 1, "steps": [{"event_type": "ENTER", "geofence_id": "A"},
                                       {"event_type": "ENTER", "geofence_id": second}]}


def test_live_edits_keep_or_restart_partial_matches(kafka_settings, tmp_path):
    codec = AvroCodec()
    put_patterns(kafka_settings, codec, [seq("louder", "B"), seq("rerouted", "B")])
    matches = EventCollector(kafka_settings, codec, "geo.cep-matches", "CepMatch")
    state = EventCollector(kafka_settings, codec, "geo.cep-state", "CepState")
    procs = start_cep(kafka_settings, tmp_path, ("rekey", "entity"))
    n = [0]

    def send(entity: str, gid: str) -> dict:
        """Stamped with the wall clock: the stage's input clock runs on these times."""
        n[0] += 1
        e = dict(geofence_event(n[0], "t", "ENTER", entity, gid), ts_ms=int(time.time() * 1000) + n[0])
        publish_events(kafka_settings, codec, [e])
        return e

    def found(pid: str, key: str, version: int | None = None) -> list:
        return [m for m in matches.snapshot() if m["pattern_id"] == pid and m["key"] == key
                and (version is None or m["pattern_version"] == version)]

    try:
        first = send("v1", "A")  # both patterns now have v1 half-way
        wait_for(lambda: any(first["event_id"] in r["patterns"] and '"louder"' in r["patterns"]
                             and '"rerouted"' in r["patterns"] for r in state.snapshot()), 60, what="v1 mid-match")
        put_patterns(kafka_settings, codec, [seq("louder", "B", "critical"), seq("rerouted", "C")], version=2)
        # a probe per attempt until both edits are live in the stage (the side input is followed)
        for attempt in range(20):
            probe = f"probe-{attempt}"
            send(probe, "A"), send(probe, "B"), send(probe, "C")
            try:
                wait_for(lambda probe=probe: found("louder", probe, 2) and found("rerouted", probe, 2), 8,
                         what="edits applied")
                break
            except AssertionError:
                continue
        else:
            raise AssertionError("the edited patterns never took effect")
        second = send("v1", "B")
        send("v1", "C")
        wait_for(lambda: found("louder", "v1"), 60, what="v1's match of the severity-edited pattern")
        (m,) = found("louder", "v1")
        assert (m["severity"], m["pattern_version"], m["event_ids"]) == (
            "critical", 2, [first["event_id"], second["event_id"]])  # the partial match survived
        # the steps edit restarted "rerouted": v1's ENTER A from before it does not start A -> C
        send("w2", "A"), send("w2", "C")  # a fresh entity after the edit does match, so it is not just slow
        wait_for(lambda: found("rerouted", "w2"), 60, what="the rerouted pattern matching after the edit")
        assert found("rerouted", "v1") == []
        assert all(m["pattern_version"] == 2 for m in matches.snapshot() if m["pattern_id"] == "rerouted")
    finally:
        for p in procs.values():
            stop(p)
        matches.close()
        state.close()
    assert tracebacks(tmp_path) == []
