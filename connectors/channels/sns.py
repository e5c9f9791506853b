"""AWS SNS via boto3 (any endpoint: moto in tests, AWS in production). FIFO topics get
MessageGroupId (the tenant) and MessageDeduplicationId (the delivery id)."""

from __future__ import annotations

import asyncio
import json

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

from connectors.channels.base import ChannelConfig, Notification, RetryLater
from geoflux.errors import PermanentError, TransientError, ValidationError

TRANSIENT_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "InternalError",
                   "InternalFailure", "ServiceUnavailable", "RequestTimeout", "KMSThrottling"}


def sns_client(s: dict):
    """botocore's own retries are off: the delivery worker's retry policy is the only one."""
    return boto3.client(
        "sns", endpoint_url=s.get("endpoint_url"), region_name=s.get("region", "us-east-1"),
        aws_access_key_id=s.get("access_key_id"), aws_secret_access_key=s.get("secret_access_key"),
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10))


def publish(client, args: dict, what: str) -> str:
    """SNS Publish with its errors classified: throttling waits, 5xx and connection errors are
    transient, anything else (a bad topic, an invalid phone number) is permanent."""
    try:
        return client.publish(**args)["MessageId"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        detail = f"{what}: {code} {exc}"
        if code in ("Throttling", "ThrottlingException", "ThrottledException"):
            raise RetryLater(detail, None) from exc
        if code in TRANSIENT_CODES or status >= 500:
            raise TransientError(detail) from exc
        raise PermanentError(detail) from exc
    except (BotoConnectionError, BotoCoreError) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc


class SnsChannel:
    kind = "sns"

    def __init__(self, config: ChannelConfig) -> None:
        self.name, self.s = config.name, config.settings
        self._client = sns_client(self.s)

    @classmethod
    def validate(cls, settings: dict) -> None:
        arn = settings.get("topic_arn")
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise ValidationError("settings.topic_arn must be an SNS topic ARN")

    def publish_args(self, n: Notification) -> dict:
        arn = self.s["topic_arn"]
        args = {"TopicArn": arn, "Subject": f"[{n.severity.upper()}] {n.title}"[:100],
                "Message": json.dumps({"alert_id": n.alert_id, "tenant_id": n.tenant_id,
                                       "severity": n.severity, "title": n.title, "body": n.body,
                                       "labels": n.labels, "action": n.action,
                                       "delivery_id": n.delivery_id}),
                "MessageAttributes": {
                    "severity": {"DataType": "String", "StringValue": n.severity},
                    "delivery_id": {"DataType": "String", "StringValue": n.delivery_id}}}
        if arn.endswith(".fifo"):
            args["MessageGroupId"] = n.tenant_id[:128]
            args["MessageDeduplicationId"] = n.delivery_id[:128]
        return args

    def _send(self, n: Notification) -> str:
        return publish(self._client, self.publish_args(n), f"sns {self.name}")

    async def send(self, n: Notification) -> str:
        return await asyncio.to_thread(self._send, n)

    async def close(self) -> None:
        pass
