"""A worker whose consumer stops taking part in its group exits for its supervisor, and one
that is a steady member does not: an at-least-once worker, and a transactional stage (the CEP
re-key, started as `geoflux worker cep --mode rekey`). Real librdkafka statistics against a
real broker, paused (SIGSTOP) past the stall limit, which is shortened to seconds for the
test; the worker runs in a process of its own, as it does under `geoflux up`, since the exit
ends the process."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import wait_for
from tests.integration.alo_recorder import three_partitions
from tests.integration.geo_helpers import worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

STALL_S = 8

WORKER = """
import asyncio, sys
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from tests.integration.alo_recorder import Recorder

class Watched(Recorder):
    stage = "stall-test"
    def assigned(self, partitions):
        print("assigned", len(partitions), flush=True)

kafka = KafkaSettings(bootstrap=sys.argv[1], partitions=3, topic_prefix="s.", group_stall_s=float(sys.argv[2]))
asyncio.run(Watched(kafka, [topic("jobs.requests", kafka)]).run())
"""


def command(shell: str, kafka) -> tuple[list[str], dict | None]:
    if shell == "at-least-once":
        return [sys.executable, "-c", WORKER, kafka.bootstrap, str(STALL_S)], None
    return ([sys.executable, "-m", "services.cli", "worker", "cep", "--mode", "rekey"],
            worker_env(kafka, GEOFLUX_KAFKA_GROUP_STALL_S=str(STALL_S), GEOFLUX_LOG_LEVEL="INFO"))


@contextlib.contextmanager
def spawned(cmd: list[str], env: dict | None):
    """The worker's process, its output gathered line by line by a reader thread; killed at
    the end if it still runs."""
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True)
    reader.start()
    try:
        yield worker, lines, reader
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait(10)


def wait_assigned(worker: subprocess.Popen, lines: list[str], timeout_s: float) -> None:
    """Until the worker says it was assigned partitions (or exits: the caller asserts on that)."""
    try:
        wait_for(lambda: any(line.startswith("assigned") or '"event": "assigned"' in line for line in lines)
                 or worker.poll() is not None, timeout_s, what="an assignment")
    except AssertionError:
        raise AssertionError("no assignment; the worker wrote:\n" + "".join(lines)[-3000:]) from None


@pytest.mark.parametrize("shell", ["at-least-once", "transactional"])
def test_a_worker_out_of_its_group_past_the_limit_exits_and_a_steady_one_does_not(pausable, shell):
    kafka, _t, _producer = three_partitions(pausable.bootstrap, "s.")
    with spawned(*command(shell, kafka)) as (worker, lines, reader):
        wait_assigned(worker, lines, 60)
        # steady for three times the limit: statistics arrive, the group is up, nothing fires
        deadline = time.monotonic() + 3 * STALL_S
        while time.monotonic() < deadline:
            assert worker.poll() is None, "".join(lines)
            time.sleep(0.5)
        pid = pausable.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            # the session expires after 6 s; the limit after that: exit code 75, well inside
            # the pause, so the broker's absence (not its return) is what ended the worker
            wait_for(lambda: worker.poll() is not None, 6 + STALL_S + 15, interval_s=0.2,
                     what="the stalled worker to exit")
        finally:
            os.kill(pid, signal.SIGCONT)
        reader.join(10)
        out = "".join(lines)
        assert worker.returncode == 75, out
        assert "the consumer group has not been joined" in out, out


# A side input too large to read within the limit, simulated: its load takes `argv[2]` s longer.
SLOW_START = """
import sys, time
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import codec_from_settings
from services.logging import configure_logging
from streams.cep.stage import CepRekeyStage
from streams.runtime.txn_processor import SideInput

class SlowToLoad(SideInput):
    def load(self, timeout_s=60.0):
        time.sleep(float(sys.argv[2]))
        return super().load(timeout_s)

configure_logging()
kafka = KafkaSettings(bootstrap=sys.argv[1], partitions=3, topic_prefix="s.", group_stall_s=float(sys.argv[3]))
codec = codec_from_settings()
stage = CepRekeyStage(kafka, codec, "0")
stage.side_inputs.append(SlowToLoad(kafka, topic("jobs.requests", kafka), "JobRequest", codec, lambda _k, _r: False))
stage.serve()
"""


def test_a_transactional_stage_slow_to_start_past_the_limit_is_not_ended(pausable):
    """The limit counts from the subscription: what a stage does before it (waiting for its
    transaction coordinator, as on a fresh broker creating its transaction log; loading side
    inputs) leaves no group to be stuck out of yet."""
    kafka, _t, _producer = three_partitions(pausable.bootstrap, "s.")
    slow_s = 2 * STALL_S + 5  # twice the limit and the watch's 5 s turn: an armed watch fires
    cmd = [sys.executable, "-c", SLOW_START, kafka.bootstrap, str(slow_s), str(STALL_S)]
    with spawned(cmd, worker_env(kafka, GEOFLUX_LOG_LEVEL="INFO")) as (worker, lines, _reader):
        wait_assigned(worker, lines, slow_s + 60)
        assert worker.poll() is None, "".join(lines)[-3000:]
