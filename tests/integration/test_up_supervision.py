"""`geoflux up` supervises: a SIGKILLed worker is started again and the stack keeps working; a
worker that always fails is given up with its name and last error while the others run; a
40-second broker outage (SIGKILL, then `geoflux kafka start`) is survived by the demo feed and
the API without a restart, and events flow again afterwards — all read through the API."""

import os
import signal
import time

import pytest

from services.devstack.local_process import pid_alive
from tests.conftest import wait_for
from tests.integration.geo_helpers import http
from tests.integration.up_helpers import UpStack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # the broker is started the way an operator would, before `up`: `up` watches it, and the
    # outage below is ours to end with `geoflux kafka start`
    s = UpStack(tmp_path_factory.mktemp("up-supervision"),
                # one worker with a setting it cannot parse: it fails on every start
                GEOFLUX_STACK_PART_ENV='{"sla-monitor": {"GEOFLUX_ALERT_SLA_TARGETS": "not json"}}')
    started = s.geoflux("kafka", "start")
    assert started.returncode == 0, started.stderr
    try:
        s.start().wait_ready()
        yield s
    finally:
        s.close(lambda: s.geoflux("kafka", "stop"))


def events_flow(stack: UpStack, since_ms: int, timeout_s: float) -> list[dict]:
    return wait_for(lambda: stack.events_since(since_ms), timeout_s, interval_s=2,
                    what=f"geofence events after {since_ms}")


def test_a_killed_worker_is_restarted_and_a_broken_one_is_given_up(stack):
    events_flow(stack, int(time.time() * 1000) - 60_000, 180)
    evaluator = stack.part("evaluator")
    assert evaluator["state"] == "running" and evaluator["restarts"] == 0
    os.killpg(evaluator["pid"], signal.SIGKILL)
    wait_for(lambda: stack.part("evaluator")["restarts"] == 1
             and stack.part("evaluator")["state"] == "running", 60, interval_s=0.5,
             what="the evaluator started again")
    restarted = stack.part("evaluator")
    assert restarted["last_exit"] == "killed by SIGKILL" and restarted["pid"] != evaluator["pid"]
    assert "evaluator: killed by SIGKILL" in stack.output()
    after_ms = int(time.time() * 1000)
    assert events_flow(stack, after_ms, 180)  # the restarted evaluator writes events again

    wait_for(lambda: stack.part("sla-monitor")["state"] == "given-up", 240, interval_s=1,
             what="the broken worker given up")
    broken = stack.part("sla-monitor")
    assert broken["restarts"] == 4 and broken["last_exit"] == "exit code 1"
    assert "sla_targets" in broken["last_error"]
    shown = stack.geoflux("status")
    assert shown.returncode == 0
    row = next(ln for ln in shown.stdout.splitlines() if ln.startswith("sla-monitor"))
    assert "given-up" in row
    assert "sla_targets" in shown.stdout.split(row, 1)[1].splitlines()[1]  # its last error below it
    assert "sla-monitor: GAVE UP after 5 exits" in stack.output()
    others = [p for p in stack.status()["parts"] if p["name"] not in ("sla-monitor",)]
    assert all(p["state"] in ("running", "external") for p in others), others
    # the console's view of the same: GET /api/v1/stack, operators only
    status, body = http("GET", stack.base + "/api/v1/stack", key=stack.keys["operator"])
    assert status == 200 and not body["stale"]
    assert {p["name"]: p["state"] for p in body["parts"]}["sla-monitor"] == "given-up"
    assert http("GET", stack.base + "/api/v1/stack", key=stack.keys["tenant demo"])[0] == 403


def test_a_broker_outage_of_40s_is_waited_out(stack):
    before = {p["name"]: p for p in stack.status()["parts"]}
    kafka_pid = before["kafka"]["pid"]
    os.kill(kafka_pid, signal.SIGKILL)
    wait_for(lambda: stack.part("kafka")["state"] == "down", 30, interval_s=0.5,
             what="up noticing the broker is gone")
    outage_end = time.monotonic() + 40  # the fault: the broker stays away for 40 s
    while time.monotonic() < outage_end:
        assert stack.proc.poll() is None, stack.output()
        time.sleep(1)
    started = stack.geoflux("kafka", "start", timeout=330)  # the broker has 300 s to recover
    assert started.returncode == 0, started.stderr
    back_ms = int(time.time() * 1000)
    wait_for(lambda: stack.part("kafka")["state"] == "running", 30, interval_s=0.5,
             what="up seeing the broker back")
    assert events_flow(stack, back_ms, 240)  # the demo feed, the evaluator and the API: all resumed
    # the API's own producer and its followed views work again: a geofence written now is read back
    fence = {"type": "Feature", "id": "after-outage", "properties": {"name": "after", "tenant_id": "demo"},
             "geometry": {"type": "Polygon", "coordinates": [[[1, 1], [2, 1], [2, 2], [1, 2], [1, 1]]]}}
    assert http("POST", stack.base + "/api/v1/geofences", fence, key=stack.keys["operator"])[0] == 201
    assert http("GET", stack.base + "/api/v1/geofences/after-outage?tenant_id=demo",
                key=stack.keys["operator"])[0] == 200
    after = {p["name"]: p for p in stack.status()["parts"]}
    # the producers waited instead of exiting: neither the demo feed nor the API was restarted
    for name in ("demo", "api"):
        assert after[name]["restarts"] == before[name]["restarts"], after[name]
        assert after[name]["pid"] == before[name]["pid"] and pid_alive(after[name]["pid"])
    assert "waiting for the broker" in (stack.dir / "demo.log").read_text()
    # a transactional worker whose call hung on the dead broker exited for the supervisor (code
    # 75) and is started again: every part is running again within its backoff
    def all_running():
        parts = {p["name"]: p for p in stack.status()["parts"]}
        return all(p["state"] in ("running", "external") for n, p in parts.items() if n != "sla-monitor")
    wait_for(all_running, 120, interval_s=1, what="every part running again")
