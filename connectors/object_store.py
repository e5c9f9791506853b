"""Objects too large for a Kafka record (job inputs above a threshold, job results) live in an
object store; topics carry a key into it. One small interface, two backends, picked by URL:

    s3://bucket/prefix       Amazon S3 (boto3; moto in server mode in the tests)
    file:///path/to/dir      a local directory, for a single node (`geoflux up`)

Keys are relative ("inputs/{job_id}.json"); a backend refuses keys that could leave its root.
Objects expire: the file backend's `sweep` deletes what is older than a cutoff; on S3 a bucket
lifecycle rule does it (docs/ARCHITECTURE.md, "Job objects expire") and `sweep` does nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from geoflux.errors import ConfigurationError, ValidationError
from geoflux.settings import ObjectStoreSettings

_KEY = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key) or any(p in (".", "..") for p in key.split("/")):
        raise ValidationError(f"object key {str(key)[:80]!r} is not a plain relative key")
    return key


class ObjectStore(Protocol):
    url: str  # where it is, for messages and logs

    def put(self, key: str, data: bytes) -> None:
        """Stores `data` whole: a reader sees the old object, the new one, or none, never a part."""
        ...

    def get(self, key: str) -> bytes | None:
        """The object, or None if there is none."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Removes the object; deleting what is not there is not an error."""
        ...

    def sweep(self, prefix: str, older_than_s: float) -> int:
        """Deletes objects under `prefix` last written more than `older_than_s` ago; how many."""
        ...


def open_object_store(settings: ObjectStoreSettings | None = None) -> ObjectStore:
    s = settings or ObjectStoreSettings()
    parsed = urlparse(s.url)
    if parsed.scheme == "file":
        from connectors.object_store_file import FileObjectStore

        return FileObjectStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from connectors.object_store_s3 import S3ObjectStore

        if not parsed.netloc:
            raise ConfigurationError(f"GEOFLUX_OBJECT_STORE_URL {s.url!r}: s3://bucket[/prefix]")
        return S3ObjectStore(parsed.netloc, parsed.path.strip("/"), region=s.region,
                             endpoint_url=s.endpoint_url)
    raise ConfigurationError(f"GEOFLUX_OBJECT_STORE_URL {s.url!r}: use s3://bucket/prefix or file:///dir")
