"""The broker a benchmark runs against: `GEOFLUX_KAFKA_BOOTSTRAP` if set, else a throwaway
local broker on free ports, stopped when the benchmark ends, including by SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import structlog

from geoflux.settings import LocalKafkaSettings
from services.devstack.local_kafka import LocalKafka
from services.devstack.local_process import free_port

# Stages a benchmark runs in its own processes log with structlog, to stdout by default: into
# the table regenerate.py keeps. The table is stdout; their logs go to stderr. At import, so
# the processes a benchmark spawns (they import its module, hence this one) do the same.
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


@contextmanager
def benchmark_broker(workdir: Path) -> Iterator[str]:
    # Python's default SIGTERM ends the process without its `finally` blocks: the broker and
    # the workers a benchmark started ran on as orphans. As SystemExit, both are stopped (the
    # workers also when the broker is someone else's).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
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
