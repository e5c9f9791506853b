"""Our own processes failing: undecodable bytes published onto every input topic (each stage
sets them aside on its DLQ and goes on), then every worker SIGKILLed mid-stream (each is
started again, as its supervisor would)."""

import pytest

from tests.faults.checks import PIPELINES, dlq_api_items, poison_dead_lettered
from tests.faults.matrix import assert_cell, run_phase
from tests.faults.stack import WORKERS

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

POISON = "poison records on every input"
SIGKILL = "SIGKILL of the worker"


@pytest.fixture(scope="module")
def poisoned(stack):
    return run_phase(stack, stack.publish_garbage)


@pytest.fixture(scope="module")
def killed(stack, poisoned):
    def kill_everyone():
        for name in WORKERS:
            stack.kill_worker(name)
    return run_phase(stack, kill_everyone)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_poison_records(stack, poisoned, pipeline, request):
    outcome = poisoned[pipeline]
    published, set_aside = poison_dead_lettered(stack, pipeline)
    if pipeline == "gateway":  # a view, not a stage: it skips (and counts) what it cannot decode
        outcome.problems += [] if stack.procs["api"].poll() is None else ["the API exited"]
    else:
        outcome.dead_lettered = set_aside
        assert published > 0 and set_aside == published, (
            f"{pipeline}: {published} garbage record(s) on its inputs, {set_aside} on its DLQ")
        shown = dlq_api_items(stack, pipeline)  # what a person sees at /api/v1/dlq, to redrive
        assert len(shown) == published and all(i["stage"] and i["original_base64"] for i in shown), shown[:2]
    assert_cell(POISON, request.node.nodeid, outcome, dead_letters_expected=True)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_sigkill_of_the_worker(killed, pipeline, request):
    assert_cell(SIGKILL, request.node.nodeid, killed[pipeline])
