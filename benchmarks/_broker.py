"""The broker a benchmark runs against: `GEOFLUX_KAFKA_BOOTSTRAP` if set, else a throwaway
local broker on free ports, stopped when the benchmark ends."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from geoflux.settings import LocalKafkaSettings
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_process import free_port


@contextmanager
def benchmark_broker(workdir: Path) -> Iterator[str]:
    bootstrap = os.environ.get("GEOFLUX_KAFKA_BOOTSTRAP")
    if bootstrap:
        yield bootstrap
        return
    broker = LocalKafka(LocalKafkaSettings(data_dir=workdir / "kafka", port=free_port(),
                                           controller_port=free_port(), heap="1g"))
    try:
        yield broker.start()
    finally:
        broker.stop()
