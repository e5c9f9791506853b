"""The geoflux error tree. Every boundary converts what the library beneath it raised. Pure.

    GeofluxError
    ├── TransientError      retry with backoff (network, 5xx, 429, broker unavailable)
    ├── PermanentError      never retried: straight to a DLQ with the reason
    │   ├── ValidationError bad input: HTTP 4xx / DLQ record with `error_class`
    │   ├── NotFound        no such object (for this tenant): HTTP 404
    │   └── BadSignature    a signed request (webhook, SNS message) that does not verify: 401/403
    ├── QuotaExceeded       a tenant's quota refuses the request now: 429 with Retry-After
    ├── ResultsGone         a job's results expired with the idempotency window: 410
    ├── JobCancelled        a job dismissed while it ran: its work was stopped (status `dismissed`)
    ├── JobTimedOut         a job past its time limit: its work was stopped (status `failed`)
    └── ConfigurationError  the operator must act (missing Java, port taken, foreign data dir)

`error_class` is the stable string written into DLQ records and HTTP problem documents.
Narrower classes live beside the code that raises them and sit in this tree by their base:
`IdempotencyConflict` (streams/jobs/idempotency.py) and `RecordTooLarge`
(services/control/job_writer.py) are ValidationError and PermanentError; a channel's
`RetryLater` is a TransientError, its `EndpointGone` and `CallbackSecretMissing` are
PermanentError (connectors/channels/); `KafkaAuthenticationError` (connectors/kafka_config.py)
is a ConfigurationError. `tests/unit/test_errors.py` holds the tree to this drawing.
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


class NotFound(PermanentError):
    error_class = "not_found"


class BadSignature(PermanentError):
    error_class = "bad_signature"


class QuotaExceeded(GeofluxError):
    """`decision`: the quota decision that refused (its rule, reason and retry delay)."""

    error_class = "quota_exceeded"

    def __init__(self, decision) -> None:
        super().__init__(decision.reason or "quota exceeded", reason=decision.rule)
        self.decision = decision


class ResultsGone(GeofluxError):
    error_class = "results_expired"


class JobCancelled(GeofluxError):
    error_class = "dismissed"


class JobTimedOut(GeofluxError):
    error_class = "timeout"


class ConfigurationError(GeofluxError):
    error_class = "configuration"


def classify(exc: BaseException) -> str:
    """`transient` or `permanent` for any exception; unknown errors are permanent so they stop."""
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    return "permanent"
