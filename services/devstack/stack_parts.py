"""The parts `geoflux up` runs, behind one small interface the supervisor drives: a worker (a
`geoflux` command as a child process), a service it starts or finds running (the broker,
PostgreSQL, the registry: `start()` blocks until it answers), and an external service it only
names (GEOFLUX_PG_DSN, GEOFLUX_SCHEMA_REGISTRY_URL, a remote broker)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

from services.devstack.local_process import ManagedProcess, exit_cause

# librdkafka's line when a consumer's owner has not polled for max.poll.interval.ms: our stages
# poll every few milliseconds, so a main loop blocked that long is hung, not busy
HUNG_MARK = "Application maximum poll interval"


class Part(Protocol):
    name: str
    kind: str  # service | worker
    owned: bool  # started by `up`: restarted when it exits; otherwise only watched
    blocking: bool  # launch() waits until the part is ready: run it off the loop

    @property
    def where(self) -> str: ...

    def launch(self) -> None: ...

    def pid(self) -> int | None: ...

    def exit_cause(self) -> str: ...

    def last_error(self) -> str: ...

    def stop(self) -> None: ...


class WorkerPart:
    """A `geoflux` command run as a child process, its output in `<dir>/<name>.log`."""

    kind, owned, blocking = "worker", True, False

    def __init__(self, name: str, argv: list[str], env: dict[str, str], directory: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log = directory / f"{name}.log"
        self.proc = ManagedProcess(name, directory / f"{name}.pid", [self.log])

    @property
    def where(self) -> str:
        return f"log {self.log}"

    def launch(self) -> None:
        self.proc.spawn([sys.executable, "-m", "services.cli", *self.argv], self.log, env=self.env)
        self._scanned = self.log.stat().st_size if self.log.exists() else 0

    def hung(self) -> str | None:
        """The log line that says this run's main loop is blocked (HUNG_MARK), if it said so."""
        try:
            with open(self.log, "rb") as f:
                f.seek(getattr(self, "_scanned", 0))
                text = f.read().decode(errors="replace")
                self._scanned = f.tell()
        except OSError:
            return None
        found = [ln for ln in text.splitlines() if HUNG_MARK in ln]
        return found[-1].strip()[:300] if found else None

    def kill(self) -> None:
        self.proc.stop(0, kill=True)

    def pid(self) -> int | None:
        return self.proc.pid()

    def exit_cause(self) -> str:
        return exit_cause(self.proc.exit_code())

    def last_error(self) -> str:
        return self.proc.last_error()

    def stop(self) -> None:
        self.proc.stop(20)


class ServicePart:
    """The broker, PostgreSQL or the registry: `service.start()` blocks until it answers."""

    kind, blocking = "service", True

    def __init__(self, name: str, service, owned: bool, where: str) -> None:
        self.name, self.service, self.owned, self.where = name, service, owned, where

    def launch(self) -> None:
        self.service.start()

    def pid(self) -> int | None:
        return self.service.pid()

    def exit_cause(self) -> str:
        return exit_cause(self.service.process.exit_code()) if self.owned else "not running"

    def last_error(self) -> str:
        return self.service.process.last_error()

    def stop(self) -> None:
        if self.owned:
            self.service.stop()


class ExternalPart:
    """A service `up` uses but does not run (GEOFLUX_PG_DSN, GEOFLUX_SCHEMA_REGISTRY_URL, a
    remote broker): listed with where it is; /readyz checks it."""

    kind, owned, blocking = "service", False, False

    def __init__(self, name: str, where: str) -> None:
        self.name, self.where = name, where

    def launch(self) -> None:
        pass

    def pid(self) -> int | None:
        return None

    def exit_cause(self) -> str:
        return ""

    def last_error(self) -> str:
        return ""

    def stop(self) -> None:
        pass
