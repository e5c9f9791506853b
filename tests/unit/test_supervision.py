"""`geoflux up`'s supervision without processes: the restart backoff, the crash-loop limit, and
the supervisor's decisions over parts that exit (a fake clock; milliseconds)."""

import json
import threading

import pytest

from services.devstack.restart_policy import RestartPolicy, RestartTracker
from services.devstack.stack_parts import ExternalPart
from services.devstack.supervisor import Supervisor


def test_backoff_doubles_to_the_cap_and_resets_after_a_healthy_run():
    t = RestartTracker(RestartPolicy(loop_exits=100))
    now, delays = 0.0, []
    for _ in range(8):  # each run lasts 2 s: never healthy
        now += 2.0
        delays.append(t.on_exit(now, now - 2.0))
        now += delays[-1]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert t.on_exit(now + 61, now) == 1  # ran 61 s healthy: from the start again
    assert t.on_exit(now + 63, now + 62) == 2


def test_five_exits_within_two_minutes_is_a_crash_loop():
    t = RestartTracker(RestartPolicy())
    assert [t.on_exit(x, x - 1) for x in (10, 20, 30, 40)] == [1, 2, 4, 8]
    assert t.on_exit(50, 49) is None  # the fifth within 120 s


def test_exits_spread_over_more_than_the_window_are_no_loop():
    t = RestartTracker(RestartPolicy())
    assert all(t.on_exit(x, x - 1) is not None for x in range(0, 1000, 31))


@pytest.mark.parametrize("bad", [dict(initial_s=0), dict(initial_s=40, max_s=30), dict(loop_exits=0)])
def test_a_nonsense_policy_is_refused(bad):
    with pytest.raises(ValueError):
        RestartPolicy(**bad)


class FakePart:
    kind, owned, blocking = "worker", True, False

    def __init__(self, name, error="boom"):
        self.name, self.where, self.error = name, f"log {name}.log", error
        self.running, self.launches, self.stopped = False, 0, False

    def launch(self):
        self.running, self.launches = True, self.launches + 1

    def pid(self):
        return 1000 + self.launches if self.running else None

    def exit_cause(self):
        return "exit code 3"

    def last_error(self):
        return self.error

    def stop(self):
        self.running, self.stopped = False, True


@pytest.fixture
def world(tmp_path):
    clock = {"t": 0.0}
    said: list[str] = []
    sup = Supervisor(RestartPolicy(), tmp_path / "stack.json", said.append, clock=lambda: clock["t"])
    return sup, clock, said, tmp_path / "stack.json"


def test_an_exit_is_restarted_after_the_backoff_with_its_cause_said(world):
    sup, clock, said, status = world
    part, other = sup.add(FakePart("evaluator", "ERROR lost the plot")), sup.add(FakePart("api"))
    sup.launch(part), sup.launch(other)
    part.running = False  # SIGKILLed, say
    clock["t"] = 5.0
    sup.tick()
    assert sup.states["evaluator"].state == "restarting"
    assert said[-1] == "evaluator: exit code 3: ERROR lost the plot; starting again in 1s"
    clock["t"] = 5.5
    sup.tick()
    assert part.launches == 1  # not before the backoff
    clock["t"] = 6.0
    sup.tick()
    assert part.launches == 2 and sup.states["evaluator"].state == "running"
    doc = json.loads(status.read_text())
    row = next(p for p in doc["parts"] if p["name"] == "evaluator")
    assert row["restarts"] == 1 and row["last_exit"] == "exit code 3"
    assert row["last_error"] == "ERROR lost the plot" and row["pid"] == 1002
    assert other.launches == 1 and sup.states["api"].state == "running"


def test_a_crash_loop_gives_up_on_that_part_alone(world):
    sup, clock, said, status = world
    bad, good = sup.add(FakePart("sla-monitor", "Error: ValueError: bad target")), sup.add(FakePart("api"))
    sup.launch(bad), sup.launch(good)
    for _ in range(5):
        bad.running = False
        clock["t"] += 1
        sup.tick()
        clock["t"] += 20  # past the backoff (1, 2, 4, 8 s)
        sup.tick()
    assert sup.states["sla-monitor"].state == "given-up" and bad.launches == 5
    assert "sla-monitor: GAVE UP after 5 exits within 120s; last: exit code 3: Error: ValueError: bad target" in said[-1]
    clock["t"] += 100
    sup.tick()
    assert bad.launches == 5  # given up means given up
    assert good.running and good.launches == 1
    rows = {p["name"]: p for p in json.loads(status.read_text())["parts"]}
    assert rows["sla-monitor"]["state"] == "given-up" and rows["api"]["state"] == "running"


def test_a_part_not_started_by_up_is_watched_not_restarted(world):
    sup, clock, said, _ = world
    broker = FakePart("kafka")
    broker.owned = False
    sup.add(broker)
    sup.launch(broker)
    broker.running = False
    sup.tick()
    assert sup.states["kafka"].state == "down" and broker.launches == 1
    assert "kafka: DOWN (not ours to restart)" in said[-1]
    broker.running = True  # `geoflux kafka start` by whoever owns it
    sup.tick()
    assert sup.states["kafka"].state == "running" and broker.launches == 1


def test_stop_all_stops_workers_before_services_and_leaves_external_ones(world):
    sup, _, _, _ = world
    order = []
    svc, worker = FakePart("kafka"), FakePart("evaluator")
    svc.kind = "service"
    svc.stop = lambda: order.append("kafka")
    worker.stop = lambda: order.append("evaluator")
    for p in (svc, worker, ExternalPart("postgres", "db.example:5432")):
        sup.add(p)
        sup.launch(p)
    sup.stop_all()
    assert order == ["evaluator", "kafka"]


def test_stop_all_stops_the_workers_together(world):
    """Each worker's stop returns only once every worker has been asked to stop: one at a
    time, the first would wait out the barrier."""
    sup, _, _, _ = world
    asked = threading.Barrier(3, timeout=5)
    workers = [sup.add(FakePart(name)) for name in ("evaluator", "cep", "delivery")]
    for w in workers:
        w.stop = asked.wait
        sup.launch(w)
    sup.stop_all()
    assert all(sup.states[w.name].state == "stopped" for w in workers)


def test_worker_exits_during_a_service_outage_are_not_a_crash_loop(world):
    sup, clock, said, _ = world
    broker = FakePart("kafka")
    broker.kind, broker.owned = "service", False  # `geoflux kafka start`ed: watched
    sup.add(broker)
    worker = sup.add(FakePart("evaluator", "no broker"))
    sup.launch(broker), sup.launch(worker)
    broker.running = False
    sup.tick()
    for _ in range(10):  # the worker keeps failing while the broker is away
        worker.running = False
        clock["t"] += 5
        sup.tick()
    assert sup.states["evaluator"].state == "restarting" and worker.launches == 1
    assert "starting again once kafka is back" in said[-1]
    broker.running = True
    sup.tick()
    assert sup.states["kafka"].state == "running"
    sup.tick()
    assert worker.launches == 2 and sup.states["evaluator"].state == "running"
    assert sup.trackers["evaluator"].exits == []  # none of that counted


def test_a_hung_worker_is_killed_and_started_again(world, tmp_path):
    """A real log: the worker's librdkafka says its loop stopped polling (blocked in a call)."""
    from services.devstack.stack_parts import HUNG_MARK, WorkerPart

    sup, clock, said, _ = world
    part = WorkerPart("evaluator", ["worker", "evaluator"], {}, tmp_path)
    part.log.write_text("an old run's line: " + HUNG_MARK + "\n")  # before this run: ignored
    launched, killed = [], []
    part.proc.spawn = lambda *a, **k: launched.append(1)
    part.proc.pid = lambda: None if killed else 4242
    part.kill = lambda: killed.append(1)
    sup.add(part)
    sup.launch(part)
    sup.tick()
    assert sup.states["evaluator"].state == "running" and not killed
    with open(part.log, "a") as log:
        log.write(f"%4|1795961318.341|MAXPOLL|rdkafka#consumer-1| [thrd:main]: {HUNG_MARK} "
                  "(120000ms) exceeded by 83ms: leaving group\n")
    sup.tick()
    assert killed and sup.states["evaluator"].state == "restarting"
    assert sup.states["evaluator"].last_exit == "hung: killed by up"
    assert "MAXPOLL" in sup.states["evaluator"].last_error
    assert any("evaluator: hung (" in line for line in said)
