"""A warm pool of worker processes: `size` long-lived forkserver children, each running one job
at a time, fed over a pipe. A fork per job cost more than the trivial jobs it ran (~9.5 jobs/s
on two cores); a child that is already running only reads the next job.

A child is killed and replaced whenever its job is stopped (dismissed, timed out, the worker
task cancelled) and whenever it dies (a crash in native code ends the child, never the
worker); it is also replaced after `max_jobs` jobs, so memory a process code leaks does not
pile up. Nothing else about a job survives in its child: the target is called with the
job's inputs only.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import time
from multiprocessing.reduction import ForkingPickler
from typing import Callable

from connectors.compute.base import JobCancelled, JobContext, JobTimedOut
from geoflux.errors import PermanentError, TransientError
from geoflux.pids import pid_alive

_CTX = mp.get_context("forkserver")
WAKE_S = 0.1  # how often a waiting job checks for dismissal and its deadline
INLINE_SEND = 32 * 1024  # jobs this small are written to the pipe from the event loop itself


def _serve(target: Callable, conn) -> None:
    """A child's life: take a job, run it, answer, repeat until told to stop or orphaned."""
    # A stop signal sent to the worker's whole process group (systemd stopping its unit, Ctrl-C
    # in a terminal, `geoflux up`) is the worker's to act on: it cancels the job and kills this
    # child, so the job is read again by the next worker without spending an attempt. Dying
    # here first made it a failed attempt.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def progress(pct: int) -> None:
        conn.send(("progress", int(pct)))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        if msg is None:
            return
        process_id, inputs = msg
        try:
            conn.send(("ok", target(process_id, inputs, progress)))
        except Exception as exc:  # sent back and classified by the parent
            conn.send(("error", (getattr(exc, "error_class", "permanent"), f"{type(exc).__name__}: {exc}")))


class _Child:
    def __init__(self, target: Callable) -> None:
        self.conn, theirs = _CTX.Pipe(duplex=True)
        self.proc = _CTX.Process(target=_serve, args=(target, theirs), daemon=True)
        self.proc.start()
        theirs.close()
        self.jobs = 0

    def alive(self) -> bool:
        if self.proc.is_alive():
            return True
        # 255 is also what a forkserver that is gone itself (a signal to the worker's group
        # ends it) reports for each of its children, which may still be running: ask the system
        return self.proc.exitcode == 255 and pid_alive(self.proc.pid)

    def kill(self) -> None:
        if self.alive():
            try:  # by pid: Process.kill() does nothing once the forkserver reported it dead
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5  # no forkserver reports its end then: wait for it
            while pid_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(2)
        self.kill()


class ProcessPool:
    def __init__(self, target: Callable[[str, dict, Callable[[int], None]], dict], size: int,
                 max_jobs: int = 1000) -> None:
        self.target, self.size, self.max_jobs = target, max(1, size), max(1, max_jobs)
        # `target` is module-level, so the forkserver can import it; the server imports the
        # process code (shapely, pyproj) once and every child starts as a cheap fork of it
        _CTX.set_forkserver_preload([target.__module__])
        self._idle: list[_Child] = []
        self._free: asyncio.Semaphore | None = None  # created in the event loop that uses it

    async def _acquire(self) -> _Child:
        if self._free is None:
            self._free = asyncio.Semaphore(self.size)
        await self._free.acquire()
        while self._idle:
            child = self._idle.pop()
            if child.alive():
                return child
            await asyncio.to_thread(child.kill)
        try:
            return await asyncio.to_thread(_Child, self.target)
        except BaseException:
            self._free.release()
            raise

    def _release(self, child: _Child, healthy: bool) -> None:
        child.jobs += 1
        if healthy and child.jobs < self.max_jobs and child.alive():
            self._idle.append(child)
        else:
            child.kill()  # the next job starts a fresh one
        self._free.release()

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        child = await self._acquire()
        healthy = False
        deadline = time.monotonic() + ctx.timeout_s
        readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(child.conn.fileno(), readable.set)
        try:
            try:
                job = ForkingPickler.dumps((ctx.process_id, inputs))
                if len(job) <= INLINE_SEND:  # fits the pipe's buffer: never blocks the loop
                    child.conn.send_bytes(job)
                else:
                    await asyncio.to_thread(child.conn.send_bytes, job)
            except OSError as exc:
                raise TransientError(f"worker child for job {ctx.job_id} is gone: {exc}") from None
            while True:
                if cancelled():
                    raise JobCancelled(f"job {ctx.job_id} dismissed while running")
                if time.monotonic() > deadline:
                    raise JobTimedOut(f"job {ctx.job_id} exceeded its {ctx.timeout_s:.0f} s timeout")
                try:
                    # not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives
                    # as the awaited event is set (CPython gh-86296), and a chatty job's child
                    # sets it all the time, so a cancelled job ran on to its timeout
                    async with asyncio.timeout(WAKE_S):
                        await readable.wait()
                except TimeoutError:
                    if not child.alive() and not child.conn.poll():
                        raise TransientError(f"worker child for job {ctx.job_id} died "
                                             f"(exit code {child.proc.exitcode})") from None
                    continue
                readable.clear()
                while child.conn.poll():
                    try:
                        # the child writes a whole message at once: reading it here blocks the
                        # loop only for the copy, and saves a thread hop per message
                        kind, payload = child.conn.recv()
                    except (EOFError, OSError):
                        await asyncio.to_thread(child.proc.join, 1)
                        raise TransientError(f"worker child for job {ctx.job_id} died "
                                             f"(exit code {child.proc.exitcode})") from None
                    if kind == "progress":
                        progress(payload)
                        continue
                    healthy = True  # it answered: ready for the next job
                    if kind == "ok":
                        return payload
                    error_class, message = payload
                    raise (TransientError if error_class == "transient" else PermanentError)(message)
        finally:
            loop.remove_reader(child.conn.fileno())
            self._release(child, healthy)

    def close(self) -> None:
        for child in self._idle:
            child.stop()
        self._idle.clear()
