"""Fixtures of the integration tests. `pausable`: a broker of the test's own, for tests that
SIGSTOP it (never the session's shared one)."""

from __future__ import annotations

import os
import signal

import pytest

from geoflux.settings import LocalKafkaSettings
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_process import free_port


@pytest.fixture
def pausable(tmp_path):
    broker = LocalKafka(LocalKafkaSettings(data_dir=tmp_path / "kafka", port=free_port(),
                                           controller_port=free_port()))
    broker.start()
    try:
        yield broker
    finally:
        os.kill(broker.pid(), signal.SIGCONT)  # a failed assertion inside the pause
        broker.stop(kill=True)
