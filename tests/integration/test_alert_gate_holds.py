"""The gate keeps each fingerprint's de-duplication window under a key of its own (a hold), on
the real broker: a tenant's own record stays small at any alert rate, a hold outlives a
restart, is deleted from the changelog once its window is over, and windows an earlier version
kept inside the tenant's record are still honoured."""

from __future__ import annotations

import threading
import time

import pytest

from connectors.kafka_producer import ReliableProducer
from geoflux.settings import AlertSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.alerting.gate_stage import AlertGateStage, hold_key
from tests.conftest import wait_for
from tests.integration.geo_helpers import read_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ONE_PARTITION = pytest.mark.parametrize("kafka_settings", [1], indirect=True)


def candidate(n: int, fp: str, window_s: int | None = None) -> dict:
    return {"alert_id": f"a{n}", "fingerprint": fp, "tenant_id": "acme", "rule_id": "r1",
            "severity": "critical", "title": "t", "body": "b", "channels": ["hook"],
            "source_id": f"s{n}", "labels": {}, "created_ms": int(time.time() * 1000),
            "fallback_channel": None, "source": "geofence", "suppressed_reason": None,
            "dedup_window_s": window_s, "escalation_policy": None, "action": "trigger",
            "resolve_key": None}


def send(settings, codec, t: str, schema: str, key: str, recs: list[dict]) -> None:
    p = ReliableProducer(settings)
    for r in recs:
        p.send(t, codec.encode(t, schema, r), key=key)
    p.flush_or_raise()


class RunningGate:
    def __init__(self, settings, codec) -> None:
        self.gate = AlertGateStage(settings, codec, AlertSettings(rate_per_hour={"critical": 10**6}))
        self.failure: list[Exception] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.gate.run()
        except Exception as exc:  # noqa: BLE001 (the waiting test fails with it)
            self.failure.append(exc)

    def stop(self) -> None:
        self.gate.stop()
        self.thread.join(30)
        assert not self.thread.is_alive() and not self.failure, self.failure


@pytest.fixture
def gate_env(kafka_settings, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOFLUX_STREAM_DATA_DIR", str(tmp_path / "state"))
    codec = AvroCodec()
    running: list[RunningGate] = []

    def start() -> RunningGate:
        running.append(RunningGate(kafka_settings, codec))
        return running[-1]

    yield kafka_settings, codec, start
    for r in running:
        if r.thread.is_alive():
            r.stop()


def verdicts(settings, codec) -> dict[str, str | None]:
    """alert id -> its suppression reason (None: let through), as alerts.alerts says."""
    t = topic("alerts.alerts", settings)
    return {r["alert_id"]: r["suppressed_reason"]
            for r in (codec.decode(m.value(), "Alert") for m in read_to_end(settings, t))}


def changelog(settings, codec) -> list[tuple[str, dict | None]]:
    t = topic("alerts.gate-state", settings)
    return [(m.key().decode(), None if m.value() is None else codec.decode(m.value(), "GateState"))
            for m in read_to_end(settings, t)]


@ONE_PARTITION
def test_a_hold_is_its_own_record_outlives_a_restart_and_is_deleted_when_its_window_is_over(gate_env):
    settings, codec, start = gate_env
    t = topic("alerts.candidates", settings)
    gate = start()
    send(settings, codec, t, "Alert", "acme",
         [candidate(i, f"fp{i}", window_s=600) for i in range(50)] + [candidate(100, "short", window_s=3)])
    wait_for(lambda: len(verdicts(settings, codec)) == 51, 60, what="51 candidates decided")
    gate.stop()
    # a restarted gate restores the holds from the changelog: the same fingerprints are duplicates
    gate = start()
    send(settings, codec, t, "Alert", "acme", [candidate(200 + i, f"fp{i}", window_s=600) for i in range(3)])
    wait_for(lambda: len(verdicts(settings, codec)) == 54, 60, what="3 more candidates decided")
    v = verdicts(settings, codec)
    assert all(v[f"a{i}"] is None for i in range(50)) and v["a100"] is None
    assert all(v[f"a{200 + i}"].startswith(f"duplicate: fingerprint fp{i}") for i in range(3))
    # the tenant's record holds no window: 51 windows are 51 records of their own
    records = changelog(settings, codec)
    tenant = [rec for key, rec in records if key == "acme"]
    assert tenant and all(rec["held_until"] == {} for rec in tenant)
    holds = {key: rec for key, rec in records if key != "acme" and rec is not None}
    assert set(holds) == {hold_key("acme", f"fp{i}") for i in range(50)} | {hold_key("acme", "short")}
    assert holds[hold_key("acme", "fp7")]["held_until"].keys() == {"fp7"}
    # the 3 s window ends: its hold is deleted (a tombstone), the 600 s ones stay
    wait_for(lambda: (hold_key("acme", "short"), None) in changelog(settings, codec), 30,
             what="the short window's tombstone")
    assert not [k for k, rec in changelog(settings, codec) if rec is None and k != hold_key("acme", "short")]
    send(settings, codec, t, "Alert", "acme", [candidate(300, "short", window_s=3)])
    wait_for(lambda: "a300" in verdicts(settings, codec), 60, what="the fingerprint let through again")
    assert verdicts(settings, codec)["a300"] is None


@ONE_PARTITION
def test_windows_an_earlier_version_kept_in_the_tenants_record_are_honoured_and_moved(gate_env):
    settings, codec, start = gate_env
    far = int(time.time() * 1000) + 600_000
    old = {"tenant_id": "acme", "held_until": {"old-fp": far, "over": 1}, "hour": 0, "counts": {},
           "open": {}}
    send(settings, codec, topic("alerts.gate-state", settings), "GateState", "acme", [old])
    start()
    send(settings, codec, topic("alerts.candidates", settings), "Alert", "acme",
         [candidate(1, "old-fp"), candidate(2, "over"), candidate(3, "new-fp")])
    wait_for(lambda: len(verdicts(settings, codec)) == 3, 60, what="3 candidates decided")
    v = verdicts(settings, codec)
    assert v["a1"].startswith("duplicate: fingerprint old-fp") and v["a2"] is None and v["a3"] is None
    records = changelog(settings, codec)
    assert [rec["held_until"] for k, rec in records if k == "acme"][-1] == {}
    moved = [rec for k, rec in records if k == hold_key("acme", "old-fp")]
    assert moved and moved[0]["held_until"] == {"old-fp": far}
