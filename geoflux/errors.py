"""The geoflux error tree. Every boundary converts what the library beneath it raised.

    GeofluxError
    ├── TransientError      retry with backoff (network, 5xx, 429, broker unavailable)
    ├── PermanentError      never retried: straight to a DLQ with the reason
    │   └── ValidationError bad input: HTTP 4xx / DLQ record with `error_class`
    └── ConfigurationError  the operator must act (missing Java, port taken, foreign data dir)

`error_class` is the stable string written into DLQ records and HTTP problem documents.
"""

from __future__ import annotations


class GeofluxError(Exception):
    error_class = "geoflux"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class TransientError(GeofluxError):
    error_class = "transient"


class PermanentError(GeofluxError):
    error_class = "permanent"


class ValidationError(PermanentError):
    error_class = "validation"


class ConfigurationError(GeofluxError):
    error_class = "configuration"


def classify(exc: BaseException) -> str:
    """`transient` or `permanent` for any exception; unknown errors are permanent so they stop."""
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    return "permanent"
