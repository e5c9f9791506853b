"""Starting, finding and stopping the local helper processes (broker, registry) we own.

A pid file per process; every wait has a deadline; a process that dies while we wait for it
is reported with the last error line of its log.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from geoflux.errors import ConfigurationError
from geoflux.pids import pid_alive  # the dev stack and its tests import it from here


def port_is_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_is_released(host: str, port: int) -> bool:
    """Whether a server could bind the port now (as the JVMs do, with SO_REUSEADDR, so a
    connection in TIME_WAIT does not count). Stricter than a failed connect: a listener whose
    accept queue is full (a killed broker its clients keep dialling, until the kernel has torn
    the process down) refuses nothing but times connects out."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_released(host: str, ports: tuple[int, ...], timeout_s: float) -> bool:
    """Waits until every port is released (see `port_is_released`); False at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not all(port_is_released(host, p) for p in ports):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def free_port() -> int:
    """A port nobody listens on, below the kernel's ephemeral range, and not handed to another
    live process on this machine. A port the kernel hands out itself (bind to 0) can be taken
    by any outgoing connection before our server binds it, which busy test machines with
    hundreds of Kafka client sockets do. A port free now can also be chosen by another process
    before our server binds it, or while it restarts: one test's web hook receiver once
    answered in place of another test's API. So each port handed out is reserved in a file
    naming this process, under a lock this user's processes share, for as long as it lives."""
    low, _high = _ephemeral_range()
    with _port_reservations() as reserve:
        for _ in range(200):
            port = random.randrange(max(1024, low - 12_000), low)
            if reserve(port):
                return port
    with socket.socket() as s:  # every candidate was taken: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _port_reservations():
    """A function that reserves a port for this process if no live process holds it and
    nobody listens on it, with the lock held across the check and the write."""
    folder = Path(tempfile.gettempdir()) / f"geoflux-ports-{os.getuid()}"  # users' /tmp files are theirs
    folder.mkdir(exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        def reserve(port: int) -> bool:
            mark = folder / str(port)
            try:
                holder = int(mark.read_text() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and pid_alive(holder):  # ours too: its server may not have bound it yet
                return False
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    return False
            mark.write_text(str(os.getpid()))
            return True

        yield reserve


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


# what marks a line as an error in the logs we read: our workers' JSON lines (structlog),
# click's one-line failures, Python tracebacks, the JVMs' log4j lines, PostgreSQL's FATAL
_ERROR_MARKS = ('"level": "error"', '"level": "critical"', "ERROR", "FATAL", "Exception", "Error")
_TAIL_BYTES = 256 * 1024


def last_error_line(*logs: Path, since: dict[Path, int] | None = None) -> str:
    """The last error line of the first log that has one; `since` (log -> byte offset) reads
    only what a process wrote after that offset, so an old run's error is not reported as
    this run's. Only the log's tail is read: logs grow for as long as the stack runs."""
    for path in logs:
        try:
            size = path.stat().st_size
            start = max((since or {}).get(path, 0), size - _TAIL_BYTES)
            with open(path, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            continue
        lines = [ln.strip() for ln in text.splitlines() if any(m in ln for m in _ERROR_MARKS)]
        if lines:
            return lines[-1][:300]
    return "no error logged"


# how long a process that looks dead may take to become waitable (its last threads exiting)
EXIT_SETTLE_S = 5.0


def exit_cause(returncode: int | None) -> str:
    """A child's end in words: `exit code 1`, `killed by SIGKILL`, or unknown (not our child)."""
    if returncode is None:
        return "exited (not our child: no exit status)"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class ManagedProcess:
    """One long-running child, detached into its own session, tracked by a pid file."""

    def __init__(self, name: str, pid_file: Path, logs: list[Path]) -> None:
        self.name, self.pid_file, self.logs = name, pid_file, logs
        self._proc: subprocess.Popen | None = None
        self._log_offsets: dict[Path, int] = {}  # where each log stood when we last spawned

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def spawn(self, cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log_offsets = {p: p.stat().st_size if p.exists() else 0 for p in self.logs}
        with open(log, "ab") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          env=env, cwd=cwd)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(str(self._proc.pid))
        return self._proc.pid

    def exit_code(self) -> int | None:
        """The exit status of the process we spawned, once it has ended (None while it runs,
        or when we did not spawn it)."""
        if self._proc is None:
            return None
        code = self._proc.poll()
        if code is None and not pid_alive(self._proc.pid):
            # a multi-threaded process shows as a zombie as soon as its main thread is gone, but
            # can be waited for only once its other threads have exited too: wait for that
            try:
                code = self._proc.wait(timeout=EXIT_SETTLE_S)
            except subprocess.TimeoutExpired:
                pass
        return code

    def last_error(self) -> str:
        """The last error line this process logged since we spawned it."""
        return last_error_line(*self.logs, since=self._log_offsets)

    def wait_until(self, ready, timeout_s: float, what: str) -> None:
        pid = self.pid()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None or pid is None or not pid_alive(pid):
                raise ConfigurationError(f"{self.name} exited before {what}: "
                                         f"{self.last_error()} (logs: {self.logs[0].parent})")
            if ready():
                return
            time.sleep(0.2)
        raise ConfigurationError(f"{self.name} did not get {what} within {timeout_s:.0f}s; "
                                 f"see {self.logs[0]}")

    def stop(self, timeout_s: float, kill: bool = False) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.1)
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while pid_alive(pid):
                self._reap()
                time.sleep(0.05)
        self._reap()
        self.pid_file.unlink(missing_ok=True)
        return True

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()
