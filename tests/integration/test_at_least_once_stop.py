"""Stopping an at-least-once worker mid-work: the shell cancels what is running, commits what
finished, and never commits past the unfinished (`streams/runtime/at_least_once.py`). A job worker
SIGTERMed while a job runs leaves that job's offset uncommitted, and the next worker runs it
to the end, on the same attempt."""

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka_config import consumer_config
from connectors.object_store import open_object_store
from connectors.topic_reader import TopicReader
from geoflux.settings import JobSettings, ObjectStoreSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.jobs import JobsService
from tests.conftest import wait_for
from tests.integration.geo_helpers import start_cli, stop

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
ENV = {"GEOFLUX_JOBS_MIN_TIMEOUT_S": "0.5"}


def requests_of(settings, job_id: str, logical: str = "jobs.requests") -> list[tuple[int, int]]:
    """(partition, offset) of each of the job's requests on `logical`."""
    found = []
    reader = TopicReader(settings, topic(logical, settings), "JobRequest", AvroCodec(),
                         lambda _k, rec, msg: (rec and rec["job_id"] == job_id
                                               and found.append((msg.partition(), msg.offset()))) or True)
    try:
        reader.load()
    finally:
        reader.close()
    return found


def where(settings, job_id: str) -> tuple[int, int]:
    """The partition and offset of the job's request on `jobs.requests`."""
    found = requests_of(settings, job_id)
    assert len(found) == 1, found
    return found[0]


def committed(settings, partition: int) -> int:
    c = Consumer(consumer_config(settings, settings.topic_prefix + "geoflux-jobs"))
    try:
        [tp] = c.committed([TopicPartition(topic("jobs.requests", settings), partition)], timeout=30)
        return tp.offset
    finally:
        c.close()


def test_a_job_running_at_stop_is_not_committed_and_the_next_worker_finishes_it(kafka_settings, tmp_path):
    objects = (tmp_path / "objects").as_uri()
    args = ["worker", "jobs", "--no-postgis", "--metrics-port", "0"]
    svc = JobsService(kafka_settings, AvroCodec(), JobSettings(),
                      objects=open_object_store(ObjectStoreSettings(url=objects)),
                      stream=StreamSettings(data_dir=tmp_path / "state")).start()
    first = start_cli(kafka_settings, args, "jobs-1", tmp_path, GEOFLUX_OBJECT_STORE_URL=objects, **ENV)
    second = None
    try:
        quick = svc.submit("convex-hull", {"geometry": {"type": "Point", "coordinates": [1, 2]}},
                           tenant_id="acme")[0]["job_id"]
        wait_for(lambda: svc.get(quick)["status"] == "successful", 120, what="a quick job done")
        # long enough that it is still running when the stop lands: on a loaded machine the
        # status view's lag and the stop together outlasted a 6 s job, and once a 20 s one (the
        # worker was still running 20 s after SIGTERM and was SIGKILLed; cause not found)
        slow = svc.submit("sleep", {"seconds": 60}, tenant_id="acme")[0]["job_id"]
        wait_for(lambda: svc.get(slow)["status"] == "running", 60, what="the slow job running")
        stop(first)
        # SIGTERM goes to the worker's process group, as systemd and `geoflux up` send it: the
        # job's pool child ignores it and the worker cancels the job, so the job is neither
        # retried nor charged an attempt; its request's offset stays uncommitted
        worker_log = (tmp_path / "jobs-1.log").read_text(errors="replace")[-4000:]
        assert first.returncode is not None and svc.get(slow)["status"] == "running", worker_log
        partition, offset = where(kafka_settings, slow)
        assert committed(kafka_settings, partition) <= offset  # never past unfinished work
        assert requests_of(kafka_settings, slow, "jobs.retry") == []
        q_partition, q_offset = where(kafka_settings, quick)
        if q_partition != partition:  # finished work is committed at stop at the latest
            assert committed(kafka_settings, q_partition) == q_offset + 1

        second = start_cli(kafka_settings, args, "jobs-2", tmp_path, GEOFLUX_OBJECT_STORE_URL=objects, **ENV)
        wait_for(lambda: svc.get(slow)["status"] == "successful", 180, what="the slow job finished")
        assert svc.get(slow)["attempt"] == svc.get(quick)["attempt"]  # the stop cost no attempt
        assert svc.get(quick)["status"] == "successful"
    finally:
        svc.close()
        stop(first)
        if second is not None:
            stop(second)
