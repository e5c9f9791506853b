"""The `geoflux` command. Every setting comes from `GEOFLUX_*` variables (see geoflux/settings.py);
every failure exits non-zero with a one-line reason.

The commands live by what they run: `stack` (the local broker, topics, `up`/`down`), `workers`
(every long-running process) and `ops` (what an operator does once, from a shell)."""

from services.cli import ops, stack, workers  # noqa: F401  (each registers its commands on `main`)
from services.cli.base import main
from services.cli.workers import worker

__all__ = ["main", "worker"]
