"""structlog set up once per process: JSON lines on stdout (structlog's default output), so
workers' logs are machine-readable; `geoflux up` and the Batch tier collect them from there."""

from __future__ import annotations

import logging
import os

import structlog


def configure_logging() -> None:
    level = getattr(logging, os.environ.get("GEOFLUX_LOG_LEVEL", "INFO").upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(message)s")
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(level))
