"""The object store on Amazon S3 (boto3). Objects live under `s3://bucket/prefix/`; expiry is
the bucket's lifecycle rule (an Expiration on the prefix, docs/ARCHITECTURE.md), so `sweep`
does nothing here."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws import client, convert, is_missing
from connectors.object_store import check_key


class S3ObjectStore:
    def __init__(self, bucket: str, prefix: str = "", *, region: str = "us-east-1",
                 endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.s3 = client("s3", region, endpoint_url)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str = "application/json") -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise convert(exc, f"S3 put s3://{self.bucket}/{self._key(key)}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            if is_missing(exc):
                return None
            raise convert(exc, f"S3 get s3://{self.bucket}/{self._key(key)}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except (ClientError, BotoCoreError) as exc:
            if is_missing(exc):
                return False
            raise convert(exc, f"S3 head s3://{self.bucket}/{self._key(key)}") from exc

    def delete(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as exc:
            if not is_missing(exc):
                raise convert(exc, f"S3 delete s3://{self.bucket}/{self._key(key)}") from exc

    def sweep(self, prefix: str, older_than_s: float) -> int:
        return 0  # the bucket's lifecycle rule expires objects
