"""The supervision loop of `geoflux up`: every part it runs (workers, the API, the demo feed, and
the broker, PostgreSQL and registry it started) is watched; a part that exits is started again
after a backoff (services/devstack/restart_policy.py), with the cause — exit code or signal, and the last
error line of its log — in `up`'s output, its log and the status file; a crash loop gives up on
that part alone. Parts `up` found already running (a broker started with `geoflux kafka start`)
are watched, not restarted: whoever started them restarts them.

The status file (JSON, replaced atomically) is what `geoflux status`, `geoflux down` and the
API's GET /api/v1/stack read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from services.devstack.restart_policy import RestartPolicy, RestartTracker
from services.devstack.stack_parts import ExternalPart, Part

HEARTBEAT_S = 5.0  # the status file is rewritten at least this often: its age says `up` lives


@dataclass
class PartState:
    state: str = "stopped"  # starting | running | restarting | given-up | down | external | stopped
    pid: int | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float = 0.0
    last_exit: str | None = None
    last_error: str | None = None
    hung: str | None = None  # why we killed it, when we did: it was blocked, not exiting
    ready_s: float | None = None  # how long its last start took (services: until it answered)
    since_ms: int = field(default_factory=lambda: int(time.time() * 1000))


class Supervisor:
    def __init__(self, policy: RestartPolicy, status_file: Path, say: Callable[[str], None],
                 extra: Callable[[], dict] = dict, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy, self.status_file, self.say, self.extra = policy, status_file, say, extra
        self.clock = clock
        self.parts: list[Part] = []
        self.states: dict[str, PartState] = {}
        self.trackers: dict[str, RestartTracker] = {}
        self._launching: dict[str, threading.Thread] = {}
        self._failed_launch: dict[str, str] = {}
        self._written, self._dirty = 0.0, True
        self._lock = threading.Lock()
        self.started_ms = int(time.time() * 1000)

    # -- parts ----------------------------------------------------------------------------------
    def add(self, part: Part) -> Part:
        self.parts.append(part)
        self.trackers[part.name] = RestartTracker(self.policy)
        self.states[part.name] = PartState(state="external" if isinstance(part, ExternalPart) else "stopped")
        return part

    def _set(self, part: Part, state: str, **changes) -> None:
        st = self.states[part.name]
        if st.state != state:
            st.since_ms = int(time.time() * 1000)
        st.state = state
        for k, v in changes.items():
            setattr(st, k, v)
        self._dirty = True  # the change goes out on this tick

    def launch(self, part: Part) -> None:
        """Starts a part; a blocking one in a thread, which the loop (or `launch_together`)
        collects."""
        self._set(part, "starting", started_at=self.clock())
        if not part.blocking:
            part.launch()
            self._set(part, "running", pid=part.pid())
            return

        def run() -> None:
            started = self.clock()
            try:
                part.launch()
                self.states[part.name].ready_s = self.clock() - started
            except Exception as exc:  # the cause goes to the loop, which backs off or gives up
                with self._lock:
                    self._failed_launch[part.name] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__

        thread = threading.Thread(target=run, name=f"start-{part.name}", daemon=True)
        self._launching[part.name] = thread
        thread.start()

    def launch_together(self, parts: list[Part]) -> None:
        """Starts independent parts at once (the broker, PostgreSQL, the registry: the slow
        starts of `up`) and waits for all; RuntimeError naming each that failed."""
        for part in parts:
            self.launch(part)
        errors = []
        for part in parts:
            thread = self._launching.pop(part.name, None)
            if thread is not None:
                thread.join()
            with self._lock:
                error = self._failed_launch.pop(part.name, None)
            if error:
                errors.append(f"{part.name} did not start: {error}")
            else:
                self._set(part, "running", pid=part.pid())
        if errors:
            raise RuntimeError("; ".join(errors))

    # -- the loop -------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        for part in self.parts:
            st = self.states[part.name]
            if st.state in ("external", "given-up", "stopped"):
                continue
            if st.state == "starting" and part.name in self._launching:
                if self._launching[part.name].is_alive():
                    continue
                self._launching.pop(part.name)
                with self._lock:
                    error = self._failed_launch.pop(part.name, None)
                if error is None:
                    self._set(part, "running", pid=part.pid())
                else:
                    self._exited(part, now, f"did not start: {error}", part.last_error())
                continue
            if st.state == "restarting":
                if now >= st.restart_at and not (part.kind == "worker" and self.services_down()):
                    st.restarts += 1
                    self.say(f"{part.name}: starting again (restart {st.restarts})")
                    self.launch(part)
                continue
            alive = part.pid() is not None
            if not part.owned:  # watched: its state follows it, nothing more
                if alive != (st.state == "running"):
                    self._set(part, "running" if alive else "down", pid=part.pid(),
                              last_error=None if alive else part.last_error())
                    self.say(f"{part.name}: {'running again' if alive else 'DOWN (not ours to restart)'}"
                             f" at {part.where}")
                continue
            if alive and st.state == "running" and hasattr(part, "hung"):
                st.hung = part.hung()
                if st.hung:
                    self.say(f"{part.name}: hung ({st.hung}); killing it to start it again")
                    part.kill()
                    alive = False
            if not alive and st.state == "running":
                if st.hung:
                    self._exited(part, now, "hung: killed by up", st.hung)
                    st.hung = None
                else:
                    self._exited(part, now, part.exit_cause(), part.last_error())
        if self._dirty or self.clock() - self._written >= HEARTBEAT_S:
            self.write_status()

    def services_down(self) -> list[str]:
        """The services we run or watch that are not running: while one is, a worker's exit
        is the outage's doing, not a crash loop of its own."""
        return [p.name for p in self.parts if p.kind == "service"
                and self.states[p.name].state not in ("running", "external")]

    def _exited(self, part: Part, now: float, cause: str, error: str) -> None:
        st = self.states[part.name]
        down = self.services_down() if part.kind == "worker" else []
        if down:  # not counted: it starts again once they are back, whatever the backoff says
            self._set(part, "restarting", pid=None, last_exit=cause, last_error=error, restart_at=now)
            self.say(f"{part.name}: {cause}: {error}; starting again once {', '.join(down)} is back")
            return
        delay = self.trackers[part.name].on_exit(now, st.started_at)
        if delay is None:
            self._set(part, "given-up", pid=None, last_exit=cause, last_error=error)
            self.say(f"{part.name}: GAVE UP after {self.policy.loop_exits} exits within "
                     f"{self.policy.loop_window_s:.0f}s; last: {cause}: {error} (the other parts go on; "
                     f"{part.where})")
            return
        self._set(part, "restarting", pid=None, last_exit=cause, last_error=error, restart_at=now + delay)
        self.say(f"{part.name}: {cause}: {error}; starting again in {delay:.0f}s")

    # -- status ---------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        parts = []
        for part in self.parts:
            st = self.states[part.name]
            pid = part.pid() if st.state in ("running", "starting", "down") else None
            parts.append({"name": part.name, "kind": part.kind, "owned": part.owned, "state": st.state,
                          "pid": pid, "where": part.where, "restarts": st.restarts,
                          "last_exit": st.last_exit, "last_error": st.last_error, "since_ms": st.since_ms,
                          "ready_s": None if st.ready_s is None else round(st.ready_s, 1)})
        return {"up": os.getpid(), "started_ms": self.started_ms, "updated_ms": int(time.time() * 1000),
                "heartbeat_s": HEARTBEAT_S, "parts": parts,
                "pids": [p["pid"] for p in parts if p["owned"] and p["pid"]], **self.extra()}

    def write_status(self) -> None:
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1))
        os.replace(tmp, self.status_file)
        self._written, self._dirty = self.clock(), False

    def stop_all(self) -> None:
        """The workers all at once, then the services they use, newest first. One worker at a
        time, each given its seconds to leave its group and end its transaction, made
        `geoflux down` the sum of them all."""
        owned = [p for p in reversed(self.parts) if p.owned and self.states[p.name].state != "external"]
        workers = [p for p in owned if p.kind != "service"]
        if workers:
            with ThreadPoolExecutor(max_workers=len(workers), thread_name_prefix="stop") as pool:
                for part, done in [(p, pool.submit(p.stop)) for p in workers]:
                    done.result()
                    self._set(part, "stopped", pid=None)
        for part in owned:
            if part.kind == "service":
                part.stop()
                self._set(part, "stopped", pid=None)
