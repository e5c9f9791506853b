"""Broker faults against every pipeline: a grey failure (the broker SIGSTOPped for 30 s, then
SIGCONT) and a crash (SIGKILL, started again 20 s later)."""

import time

import pytest

from tests.faults.checks import PIPELINES
from tests.faults.matrix import assert_cell, run_phase

# in the default run; `pytest -m broker_faults` runs these phases alone
pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults,
              pytest.mark.broker_faults]

SIGSTOP = "broker SIGSTOP 30 s"
SIGKILL = "broker SIGKILL + restart"


@pytest.fixture(scope="module")
def paused(stack):
    return run_phase(stack, lambda: stack.pause_broker(30))


@pytest.fixture(scope="module")
def crashed(stack, paused):
    def crash():
        stack.kill_broker()
        time.sleep(20)  # a rolling restart's worth of absence; workers see it, nothing is lost
        stack.start_broker()
    return run_phase(stack, crash)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_broker_sigstop_30s(paused, pipeline, request):
    assert_cell(SIGSTOP, request.node.nodeid, paused[pipeline])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_broker_sigkill_and_restart(crashed, pipeline, request):
    assert_cell(SIGKILL, request.node.nodeid, crashed[pipeline])
