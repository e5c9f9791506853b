"""The PostgreSQL a benchmark runs against: `GEOFLUX_PG_DSN` if set (the test session's, in a
smoke run), else a throwaway local cluster (PostGIS available) on a free port, removed when the
benchmark ends."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from services.devstack.local_postgres import LocalPostgres
from services.devstack.local_process import free_port


@contextmanager
def benchmark_postgres() -> Iterator[str]:
    dsn = os.environ.get("GEOFLUX_PG_DSN")
    if dsn:
        yield dsn
        return
    # not under the benchmark's own temp dir: PostgreSQL runs as the postgres user when we are
    # root, and that user must reach its data directory
    cluster = LocalPostgres(Path(f"/tmp/geoflux-bench-pg-{uuid.uuid4().hex[:8]}"), free_port())
    cluster.start()
    try:
        yield cluster.dsn()
    finally:
        cluster.remove()
