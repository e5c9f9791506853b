"""Dependencies outside Kafka failing: PostgreSQL stopped for 30 s (the audit trail waits and
catches up), then the alerts' receiver failing for a minute — 503, then 429 with Retry-After,
then no answer at all, then 410 Gone (the endpoint is disabled and what it would have taken is
dead-lettered with the reason, for a person to redrive)."""

import time

import pytest

from tests.faults.checks import PIPELINES
from tests.faults.matrix import assert_cell, run_phase
from tests.fakes import Answer

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow, pytest.mark.faults]

PG_STOP = "PostgreSQL stopped 30 s"
CHANNEL = "channel 503/429/timeout/410 for a minute"


@pytest.fixture(scope="module")
def pg_down(stack, postgres):
    def outage():
        postgres.stop()
        try:
            time.sleep(30)
        finally:
            postgres.start()
    return run_phase(stack, outage)


@pytest.fixture(scope="module")
def channel_down(stack, pg_down):
    def failing():
        for answer in (Answer(503, "unavailable"), Answer(429, "slow down", {"Retry-After": "2"}),
                       Answer(200, "ok", hang_s=5), Answer(410, "gone")):
            stack.receiver.fail_for(15, answer)
            time.sleep(15)
        stack.receiver.recover()
    return run_phase(stack, failing)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_postgresql_stopped_30s(pg_down, pipeline, request):
    assert_cell(PG_STOP, request.node.nodeid, pg_down[pipeline])


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_channel_failing_for_a_minute(channel_down, pipeline, request):
    # 410 disables the endpoint: alerts it would have taken are dead-lettered ("gone"), not lost
    assert_cell(CHANNEL, request.node.nodeid, channel_down[pipeline],
                dead_letters_expected=pipeline == "alerts")
