"""Ending a worker for its supervisor (`geoflux up`, systemd, Kubernetes) to start again: for a
shell whose own thread is stuck in a way it cannot undo. Nothing is lost by it: what was not
committed is read again by the partitions' next owner."""

from __future__ import annotations

import logging
import os
import threading
from typing import Callable

import structlog

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
