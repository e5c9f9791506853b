"""The example downstream Faust app against the real broker: a worker process counts DWELL
events per geofence in a table, exactly once per event id, through repeats on the topic, an
aborted transaction, garbage bytes, an event under the wrong key, and a SIGKILL that makes it
read its uncommitted records again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from connectors.kafka_config import consumer_config, transactional_config
from connectors.kafka_producer import ReliableProducer
from geoflux.keys import scoped
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.geo_helpers import kill, stop, worker_env

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

APP = "geoflux-loitering"


def event(n: int, gid: str, event_type: str = "DWELL", tenant: str = "acme") -> dict:
    return {"event_id": f"ev-{gid}-{n}", "event_type": event_type, "entity_id": f"truck-{n}",
            "geofence_id": gid, "geofence_version": 1, "tenant_id": tenant, "lon": 1.0, "lat": 2.0,
            "ts_ms": 1_700_000_000_000 + n, "source": f"loc:{n}", "reason": None,
            "produced_ms": None, "attributes": {}}


def read_all(settings, name: str) -> list:
    """Every committed record of a topic, in partition order."""
    c = Consumer(consumer_config(settings, f"probe-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True}))
    try:
        md = c.list_topics(name, timeout=10).topics[name]
        if md.error is not None:
            return []
        c.assign([TopicPartition(name, p, 0) for p in md.partitions])
        eof, out = set(), []
        while len(eof) < len(md.partitions):
            for m in c.consume(500, 1):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                out.append(m)
        return out
    finally:
        c.close()


def counts(settings) -> dict:
    changelog = f"{settings.topic_prefix}{APP}-loitering-counts-changelog"
    latest = {}
    for m in read_all(settings, changelog):
        latest[json.loads(m.key())] = json.loads(m.value()) if m.value() else None
    return latest


def lag(settings) -> int:
    """Records of geo.geofence-events the app's group has not committed yet."""
    t = topic("geo.geofence-events", settings)
    c = Consumer(consumer_config(settings, settings.topic_prefix + APP))
    try:
        parts = [TopicPartition(t, p) for p in range(settings.partitions)]
        total = 0
        for tp in c.committed(parts, timeout=10):
            _, hi = c.get_watermark_offsets(TopicPartition(t, tp.partition), timeout=10)
            total += hi - max(tp.offset, 0)
        return total
    finally:
        c.close()


def start_worker(settings, tmp_path, n: int) -> subprocess.Popen:
    env = worker_env(settings, GEOFLUX_STREAM_DATA_DIR=str(tmp_path / "state"),
                     # offsets are committed rarely, so a SIGKILL leaves records to read again
                     GEOFLUX_STREAM_COMMIT_INTERVAL_S="600")
    # run from tmp_path (Faust keeps its data directory in the working directory): the
    # project's packages come from PYTHONPATH
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    log = open(tmp_path / f"faust-{n}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "streams.downstream.loitering", "--loglevel", "warn",
                             "worker", "--without-web"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=tmp_path)


def test_loitering_counts_once_per_event_through_repeats_aborts_garbage_and_sigkill(kafka_settings, tmp_path):
    s, codec = kafka_settings, AvroCodec()
    t = topic("geo.geofence-events", s)

    def encode(e):
        return codec.encode(t, "GeofenceEvent", e)

    # an aborted transaction first: a read_committed consumer never sees these
    aborted = Producer(transactional_config(s, f"aborter-{uuid.uuid4().hex[:6]}"))

    def initialised():
        try:
            aborted.init_transactions(10)
            return True
        except KafkaException as exc:  # the coordinator may still be loading
            if not exc.args[0].retriable():
                raise
            return False
    wait_for(initialised, 120, interval_s=0.5, what="the transaction coordinator")
    aborted.begin_transaction()
    for n in range(5):
        aborted.produce(t, encode(event(n, "ghost")), key=scoped("acme", "ghost"))
    aborted.flush(30)
    aborted.abort_transaction(30)

    expected = {"yard": 7, "gate": 3, "dock": 1}
    producer = ReliableProducer(s)
    sent = []
    for gid, n in expected.items():
        for i in range(n):
            sent.append(event(i, gid))
            sent.append(event(i, gid, "ENTER"))  # not loitering: no table write
    sent += [event(0, "yard"), event(1, "yard"), event(0, "gate")]  # repeats upstream
    for e in sent:
        producer.send(t, encode(e), key=scoped(e["tenant_id"], e["geofence_id"]))
    producer.send(t, b"\x00\x00\x00\x00\x01garbage", key=scoped("acme", "yard"))
    producer.send(t, encode(event(99, "yard")), key=scoped("acme", "gate"))  # the wrong key
    for i in range(2):  # after the bad records: the stream went on past them
        e = event(100 + i, "dock")
        producer.send(t, encode(e), key=scoped("acme", "dock"))
    expected["dock"] += 2
    producer.flush_or_raise()

    def counted():
        c = counts(s)
        return {k.split("/")[1]: v["dwells"] for k, v in c.items() if v} == expected and c

    worker = start_worker(s, tmp_path, 1)
    try:
        try:
            first = wait_for(counted, 180, interval_s=1, what="the loitering counts")
        except AssertionError as exc:
            names = sorted(n for n in Consumer(consumer_config(s, "x")).list_topics(timeout=10).topics
                           if n.startswith(s.topic_prefix))
            raise AssertionError(f"{exc}: {counts(s)} {names}") from None
        assert sum(v["repeats"] for v in first.values()) == 3
        assert lag(s) > 0  # nothing committed yet: a restart reads these records again
    finally:
        kill(worker)  # SIGKILL
    worker = start_worker(s, tmp_path, 2)
    try:
        # the restarted worker restores the table, reads every record again, and counts none
        wait_for(lambda: sum(v["repeats"] for v in counts(s).values() if v) > 3, 180,
                 interval_s=1, what="the replayed events seen as repeats")
        assert counted(), counts(s)
        assert "acme/ghost" not in counts(s)
    finally:
        stop(worker)
    dlq = [codec.decode(m.value(), "DlqRecord") for m in read_all(s, f"{s.topic_prefix}{APP}.dlq")]
    by_id = {d["dlq_id"]: d for d in dlq}
    assert {d["error_class"] for d in by_id.values()} == {"undecodable", "validation"}
    assert len(by_id) == 2  # each bad record once (the replay wrote the same ids again)
    bad_key = next(d for d in by_id.values() if d["error_class"] == "validation")
    assert "not the event's geofence 'acme/yard'" in bad_key["error_message"]
    assert bad_key["original_key"] == b"acme/gate" and bad_key["original_topic"] == t
    assert next(d for d in by_id.values() if d["error_class"] == "undecodable")["original_value"] \
        == b"\x00\x00\x00\x00\x01garbage"
    logs = "".join((tmp_path / f"faust-{n}.log").read_text() for n in (1, 2))
    assert "Traceback" not in logs, logs[-2000:]
