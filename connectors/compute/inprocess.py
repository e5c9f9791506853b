"""The in-process tier: shapely in a child process of the worker (forkserver), so a dismissed
or timed-out job is really stopped (the child is killed) and a crash in native code cannot
take the worker down. The process code itself is passed in by the caller."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from typing import Callable

from connectors.compute.base import JobCancelled, JobContext, JobTimedOut
from geoflux.errors import PermanentError, TransientError

_CTX = mp.get_context("forkserver")


def _child(target: Callable, process_id: str, inputs: dict, conn) -> None:
    def progress(pct: int) -> None:
        conn.send(("progress", int(pct)))

    try:
        conn.send(("ok", target(process_id, inputs, progress)))
    except Exception as exc:  # sent back and classified by the parent
        conn.send(("error", (getattr(exc, "error_class", "permanent"), f"{type(exc).__name__}: {exc}")))
    finally:
        conn.close()


class InProcessTier:
    name = "inprocess"

    def __init__(self, target: Callable[[str, dict, Callable[[int], None]], dict]) -> None:
        self.target = target  # module-level, so the forkserver child can import it
        # the server imports the process code (shapely, pyproj) once; each job's child is a
        # cheap fork of it instead of a fresh interpreter importing everything again
        _CTX.set_forkserver_preload([target.__module__])

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        parent, child = _CTX.Pipe(duplex=False)
        proc = _CTX.Process(target=_child, args=(self.target, ctx.process_id, inputs, child),
                            daemon=True)
        proc.start()
        child.close()
        deadline = time.monotonic() + ctx.timeout_s
        try:
            while True:
                if cancelled():
                    raise JobCancelled(f"job {ctx.job_id} dismissed while running")
                if time.monotonic() > deadline:
                    raise JobTimedOut(f"job {ctx.job_id} exceeded its {ctx.timeout_s:.0f} s timeout")
                if parent.poll():
                    try:
                        kind, payload = parent.recv()
                    except EOFError:
                        raise TransientError(f"worker child for job {ctx.job_id} died "
                                             f"(exit code {proc.exitcode})") from None
                    if kind == "progress":
                        progress(payload)
                    elif kind == "ok":
                        return payload
                    else:
                        error_class, message = payload
                        cls = TransientError if error_class == "transient" else PermanentError
                        raise cls(message)
                elif not proc.is_alive() and not parent.poll():
                    raise TransientError(f"worker child for job {ctx.job_id} died (exit code {proc.exitcode})")
                else:
                    await asyncio.sleep(0.02)  # waiting on the child; the loop serves others
        finally:
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            parent.close()


