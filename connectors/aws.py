"""boto3 clients and what their errors mean to us: throttling, 5xx and connection failures are
transient; other client errors (a bucket or queue that does not exist, access denied) are
permanent. Shared by the object store and the AWS Batch tier."""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from geoflux.errors import PermanentError, TransientError

TRANSIENT_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "SlowDown",
                   "InternalError", "InternalFailure", "ServiceUnavailable", "RequestTimeout",
                   "ServerException"}
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def convert(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientError(f"{what}: {code} {exc}")
        return PermanentError(f"{what}: {code} {exc}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{what}: {exc}")
    return exc


def is_missing(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in MISSING_CODES


def client(service: str, region: str, endpoint_url: str | None):
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url,
                        config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                      connect_timeout=5, read_timeout=30))
