"""Ending a worker for its supervisor (`geoflux up`, systemd, Kubernetes) to start again: for a
shell whose own thread is stuck in a way it cannot undo. Nothing is lost by it: what was not
committed is read again by the partitions' next owner."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import structlog

from streams.runtime.group_health import STATS_INTERVAL_MS, GroupHealth

EX_TEMPFAIL = 75


def exit_for_supervisor(log: structlog.typing.FilteringBoundLogger, why: str, stage: str) -> None:
    # the stuck thread may be holding a logging handler's lock: the exit does not wait on it
    # for more than a few seconds
    threading.Timer(5.0, os._exit, (EX_TEMPFAIL,)).start()
    log.critical(f"{why}; exiting for the supervisor", stage=stage)
    logging.shutdown()  # the line above reaches the log before the process ends
    os._exit(EX_TEMPFAIL)


def exit_when(check: Callable[[], str | None], log: structlog.typing.FilteringBoundLogger, stage: str,
              every_s: float = 5.0) -> threading.Event:
    """Checks from a thread of its own, since the thread that would notice is the stuck one,
    and ends the process once `check` names a reason. Setting the returned event ends the watch
    (a worker stopping on its own)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every_s):
            why = check()
            if why is not None and not done.is_set():
                exit_for_supervisor(log, why, stage)

    threading.Thread(target=watch, name=f"{stage}-watchdog", daemon=True).start()
    return done


def group_stats_config(health: GroupHealth) -> dict:
    """A consumer's settings that feed `health` with librdkafka's statistics (delivered by the
    consumer's own polls)."""
    return {"statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": lambda stats: health.observe(stats, time.monotonic())}


def watch_group(health: GroupHealth, log: structlog.typing.FilteringBoundLogger, stage: str) -> threading.Event:
    """Ends the process once `health` finds the consumer stalled, counting from now (its
    subscription); setting the returned event ends the watch."""
    health.since = time.monotonic()
    return exit_when(lambda: health.stalled(time.monotonic()), log, stage)
