"""Ending a worker for its supervisor (`geoflux up`, systemd, Kubernetes) to start again: for a
shell whose own thread is stuck in a way it cannot undo. Nothing is lost by it: what was not
committed is read again by the partitions' next owner."""

from __future__ import annotations

import logging
import os

import structlog

EX_TEMPFAIL = 75


def exit_for_supervisor(log: structlog.typing.FilteringBoundLogger, why: str, stage: str) -> None:
    log.critical(f"{why}; exiting for the supervisor", stage=stage)
    logging.shutdown()  # the line above reaches the log before the process ends
    os._exit(EX_TEMPFAIL)
