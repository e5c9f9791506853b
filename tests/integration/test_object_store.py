"""The object store's two backends through one contract: a local directory, and S3 (boto3
against moto in server mode)."""

import os
import time
import uuid

import boto3
import pytest

from connectors.object_store import open_object_store
from geoflux.errors import ValidationError
from geoflux.settings import ObjectStoreSettings


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_object_store(ObjectStoreSettings(url=(tmp_path / "objects").as_uri()))
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"objects-{uuid.uuid4().hex[:8]}"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return open_object_store(ObjectStoreSettings(url=f"s3://{bucket}/geoflux/jobs", endpoint_url=endpoint))


def test_put_get_exists_delete(store):
    body = os.urandom(3 * 1024 * 1024)  # binary, larger than a Kafka record may be
    assert store.get("inputs/a.json") is None and not store.exists("inputs/a.json")
    store.put("inputs/a.json", body)
    assert store.exists("inputs/a.json") and store.get("inputs/a.json") == body
    store.put("inputs/a.json", b"replaced")
    assert store.get("inputs/a.json") == b"replaced"
    store.delete("inputs/a.json")
    store.delete("inputs/a.json")  # deleting what is gone is not an error
    assert store.get("inputs/a.json") is None


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", "", "a b", "a\\b"])
def test_keys_cannot_leave_the_store(store, key):
    with pytest.raises(ValidationError):
        store.put(key, b"x")


def test_file_store_sweeps_what_is_older_than_the_cutoff(tmp_path):
    store = open_object_store(ObjectStoreSettings(url=(tmp_path / "objects").as_uri()))
    store.put("results/old.json", b"1")
    store.put("results/new.json", b"2")
    store.put("inputs/other.json", b"3")
    past = time.time() - 3600
    os.utime(tmp_path / "objects" / "results" / "old.json", (past, past))
    assert store.sweep("results", older_than_s=600) == 1
    assert store.get("results/old.json") is None
    assert store.get("results/new.json") == b"2" and store.get("inputs/other.json") == b"3"
    assert store.sweep("nothing-here", older_than_s=0) == 0
