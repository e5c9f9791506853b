"""A local PostgreSQL cluster with PostGIS, from the machine's own server binaries (Debian's
postgresql + postgresql-15-postgis-3, which deploy/install.sh installs): `geoflux up` runs one
in its state directory, and the tests run a throwaway one per session.

PostgreSQL refuses to run as root. As root the cluster runs as the `postgres` system user
(setpriv: the server is still our own child, so its exit status is ours to read), and its
files must be where that user can reach: a directory under a private home (`/root`, pytest's
`/tmp/pytest-of-root`) is not, so the cluster then lives under `/var/lib/geoflux/postgres/`
with a symlink at the directory asked for.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from geoflux.errors import ConfigurationError
from services.devstack.local_process import ManagedProcess, pid_alive, port_is_open

SERVER_USER = "postgres"
ROOT_HOME = Path("/var/lib/geoflux/postgres")


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not found:
        raise ConfigurationError("PostgreSQL server binaries not found: apt-get install postgresql "
                                 "postgresql-15-postgis-3 (deploy/install.sh does it), or run "
                                 "`geoflux up --no-postgres`, or set GEOFLUX_PG_DSN")
    return found[0].parent


def _reachable_by(user: str, path: Path) -> bool:
    """Can `user` walk down to `path` (the nearest existing ancestor for a path not made yet)?"""
    existing = path
    while not existing.exists():
        existing = existing.parent
    return subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
                           "test", "-x", str(existing)], capture_output=True).returncode == 0


class LocalPostgres:
    """`start()` makes the cluster on first use (initdb, trust auth on loopback only, superuser
    `user`) and waits until it answers; `stop()` is a fast shutdown (SIGINT: sessions are
    ended, no waiting for clients) that escalates after `stop_timeout_s`."""

    def __init__(self, root: Path, port: int, *, host: str = "127.0.0.1", user: str = "geoflux",
                 start_timeout_s: float = 60.0, stop_timeout_s: float = 30.0) -> None:
        self.bin = pg_bin()
        self.host, self.port, self.user = host, port, user
        self.start_timeout_s, self.stop_timeout_s = start_timeout_s, stop_timeout_s
        self.as_root = os.geteuid() == 0
        self.asked = root.absolute()
        self.root = self._place(root)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.process = ManagedProcess("PostgreSQL", self.root / "postgres.pid", [self.log])

    def _place(self, asked: Path) -> Path:
        asked = asked.absolute()
        if not self.as_root or asked.is_symlink() or _reachable_by(SERVER_USER, asked):
            return asked.resolve() if asked.is_symlink() else asked
        real = ROOT_HOME / f"{asked.name}-{hashlib.sha256(str(asked).encode()).hexdigest()[:10]}"
        real.mkdir(parents=True, exist_ok=True)
        os.chmod(ROOT_HOME.parent, 0o755)
        asked.parent.mkdir(parents=True, exist_ok=True)
        asked.symlink_to(real, target_is_directory=True)
        return real

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port} (data {self.data})"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _as_server_user(self, *cmd: str) -> list[str]:
        if not self.as_root:
            return list(cmd)
        return ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups",
                "--", *cmd]

    def initdb(self) -> bool:
        """Makes the cluster unless it exists; True if it was made now."""
        if (self.data / "PG_VERSION").exists():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            pw = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        proc = subprocess.run(self._as_server_user(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust",
            "-E", "UTF8", "--no-instructions"), capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-2:])
            raise ConfigurationError(f"initdb {self.data} failed: {tail}")
        return True

    def pid(self) -> int | None:
        return self.process.pid()

    def _answers(self) -> bool:
        # pg_isready speaks the protocol: an open port alone is not a server taking connections
        return subprocess.run([str(self.bin / "pg_isready"), "-q", "-h", self.host, "-p",
                               str(self.port), "-t", "1"], capture_output=True).returncode == 0

    def start(self) -> str:
        if self.pid() is None:
            if port_is_open(self.host, self.port):
                raise ConfigurationError(f"port {self.port} on {self.host} is already taken: stop what "
                                         "holds it or set GEOFLUX_LOCAL_PG_PORT")
            self.initdb()
            self.process.spawn(self._as_server_user(
                str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-k", str(self.root), "-c", f"listen_addresses={self.host}",
                "-c", "fsync=on", "-c", "max_connections=200"), self.log)
        self.process.wait_until(self._answers, self.start_timeout_s, f"{self.host}:{self.port} answering")
        return self.dsn()

    def ensure_database(self, name: str) -> str:
        """The database `name` with PostGIS in it (made once); its DSN."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.dsn(name), autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return self.dsn(name)

    def stop(self, *, immediate: bool = False) -> bool:
        """Fast shutdown (immediate: SIGQUIT, no checkpoint — a crash, as tests want)."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
        deadline = time.monotonic() + self.stop_timeout_s
        while pid_alive(pid) and time.monotonic() < deadline:
            self.process.exit_code()  # reaps our child once it has ended
            time.sleep(0.05)
        self.process.stop(5)  # escalates if the shutdown did not finish; removes the pid file
        return True

    def remove(self) -> None:
        """Stops the cluster and deletes its files (throwaway clusters)."""
        self.stop(immediate=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if self.asked.is_symlink():
            self.asked.unlink()
