"""Running one fault against every pipeline at once, and recording each cell of the matrix.

A phase sends load, applies the fault while more load arrives, lets every pipeline settle (a
worker that exits is started again, as `geoflux up` or Kubernetes would), then checks each
pipeline against its independent expectation. The outcome of each cell is appended to the file
named by GEOFLUX_FAULT_RESULTS (tests/faults/report.py turns them into docs/SLA.md's table)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable

from tests.faults.checks import CHECKS, PIPELINES, Outcome, expected_events, unique_events
from tests.faults.stack import FaultStack

STEPS_PER_PHASE = 16  # each entity's updates per phase, half before the fault, half during it
JOBS_PER_PHASE = 6
SETTLE_S = 300.0


def run_phase(stack: FaultStack, fault: Callable[[], None]) -> dict[str, Outcome]:
    half = STEPS_PER_PHASE // 2
    before = len(stack.events.unique_ids())
    stack.send_steps(half)
    stack.submit_jobs(JOBS_PER_PHASE // 2)
    _wait(stack, lambda: len(stack.events.unique_ids()) > before, 120, "events flowing before the fault")
    started = time.monotonic()
    # the fault runs while the second half of the load arrives: work in flight meets it
    during = threading.Thread(target=fault, name="fault")
    during.start()
    time.sleep(1.0)
    stack.send_steps(STEPS_PER_PHASE - half)
    stack.submit_jobs(JOBS_PER_PHASE - JOBS_PER_PHASE // 2)
    during.join()
    settled = _wait(stack, lambda: _settled(stack), SETTLE_S, "every pipeline settled", fail=False)
    outcomes = {p: CHECKS[p](stack) for p in PIPELINES}
    for o in outcomes.values():
        o.problems += [] if settled else ["did not settle within the deadline"]
        o.recovery_s = round(time.monotonic() - started, 1)  # type: ignore[attr-defined]
    return outcomes


def _settled(stack: FaultStack) -> bool:
    want = sum(len(seq) for seq in expected_events(stack).values())
    unique, _ = unique_events(stack)
    if len(unique) < want:
        return False
    # cheapest first: `all` stops at the first pipeline still catching up
    return all(CHECKS[p](stack).lost == 0 for p in ("gateway", "cep", "alerts", "audit", "jobs"))


def _wait(stack: FaultStack, predicate, timeout_s: float, what: str, fail: bool = True) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stack.revive_exited()
        try:
            if predicate():
                return True
        except Exception:  # a dependency of the check itself (PostgreSQL) may be away
            pass
        time.sleep(1.0)
    if fail:
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
    return False


def record(fault: str, test_id: str, outcome: Outcome) -> None:
    path = os.environ.get("GEOFLUX_FAULT_RESULTS")
    if not path:
        return
    row = {"fault": fault, "test": test_id, **outcome.to_json(),
           "recovery_s": getattr(outcome, "recovery_s", None)}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def assert_cell(fault: str, test_id: str, outcome: Outcome, dead_letters_expected: bool = False) -> None:
    record(fault, test_id, outcome)
    assert outcome.lost == 0, f"{fault} / {outcome.pipeline}: {outcome.lost} lost ({outcome})"
    assert outcome.duplicated == 0, f"{fault} / {outcome.pipeline}: {outcome.duplicated} duplicated"
    assert not outcome.problems, f"{fault} / {outcome.pipeline}: {outcome.problems}"
    if not dead_letters_expected:
        assert outcome.dead_lettered == 0, f"{fault} / {outcome.pipeline}: {outcome.dead_lettered} dead-lettered"


def fresh_stack(root: Path, pg_dsn: str) -> FaultStack:
    return FaultStack(root, pg_dsn).start()
