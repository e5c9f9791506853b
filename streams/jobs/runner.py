"""The entry point the in-process tier's child runs: validate the raw inputs, run the process."""

from __future__ import annotations

from typing import Callable

from geoflux.errors import PermanentError
from streams.jobs.processes import PROCESSES, validate_inputs


def run_process(process_id: str, inputs: dict, progress: Callable[[int], None]) -> dict:
    process = PROCESSES.get(process_id)
    if process is None:
        raise PermanentError(f"no process {process_id!r}")
    return process.run(validate_inputs(process, inputs), progress)
