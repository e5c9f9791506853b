"""The foundation against a real broker: contracts on topics, the catalogue, durability."""

import io
import json
import time
import uuid

import fastavro
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.kafka_admin import admin_client, apply, describe, wait_for_cluster
from connectors.kafka_producer import ReliableProducer
from geoflux.errors import TransientError
from geoflux.settings import KafkaSettings
from schemas.catalogue import catalogue
from schemas.codec import AvroCodec, HttpSchemaRegistry, all_schema_names
from tests.conftest import wait_for
from tests.samples import SAMPLES

pytestmark = pytest.mark.kafka


def consume_all(bootstrap, topic, expected, timeout_s=30):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                if not m.error():
                    out.append(m)
    finally:
        c.close()
    return out


def test_every_schema_has_a_sample_and_a_topic():
    assert set(SAMPLES) == set(all_schema_names())
    used = {spec.value_schema for spec in catalogue().values()}
    assert used == set(all_schema_names())


def test_every_schema_round_trips_through_its_topic(kafka_settings):
    codec = AvroCodec()
    producer = ReliableProducer(kafka_settings)
    specs = {s.value_schema: s.name for s in catalogue(kafka_settings).values()}
    for schema, topic in specs.items():
        producer.send(topic, codec.encode(topic, schema, SAMPLES[schema]), key=schema)
    assert producer.flush_or_raise() == len(specs)
    for schema, topic in specs.items():
        [msg] = consume_all(kafka_settings.bootstrap, topic, 1)
        assert codec.decode(msg.value(), schema) == SAMPLES[schema]


def test_apply_is_idempotent_and_describe_reports_drift(kafka_settings):
    assert describe(kafka_settings) == []
    assert apply(kafka_settings) == []  # the fixture applied it once already
    name = catalogue(kafka_settings)["geo.locations"].name
    admin = admin_client(kafka_settings)
    res = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    for fut in admin.incremental_alter_configs([res]).values():
        fut.result()
    # a config change reaches DescribeConfigs a moment after AlterConfigs answers
    drift = wait_for(lambda: describe(kafka_settings), 30, what="the altered retention to show")
    assert [(d.topic, d.what, d.actual) for d in drift] == [(name, "retention.ms", "1000")]
    assert apply(kafka_settings) == [f"{name}: retention.ms 1000 -> {30 * 24 * 3600 * 1000}"]
    assert describe(kafka_settings) == []


def test_compacted_topics_are_compacted(kafka_settings):
    specs = catalogue(kafka_settings)
    for logical in ("geo.geofences", "geo.evaluator-state", "jobs.status", "alerts.status",
                    "geo.cep-patterns"):
        assert specs[logical].config(kafka_settings)["cleanup.policy"] == "compact"
    assert describe(kafka_settings) == []


def test_wrong_bootstrap_fails_fast_with_one_line():
    s = KafkaSettings(bootstrap="127.0.0.1:1", request_timeout_s=2)
    start = time.monotonic()
    with pytest.raises(TransientError, match="no Kafka broker answered at 127.0.0.1:1"):
        wait_for_cluster(admin_client(s), s)
    assert time.monotonic() - start < 10


def test_failed_delivery_is_raised_not_logged(kafka_settings):
    producer = ReliableProducer(kafka_settings, **{"delivery.timeout.ms": 3000})
    producer.send(f"{kafka_settings.topic_prefix}no-such-topic", b"x")
    with pytest.raises(TransientError, match="not acknowledged"):
        producer.flush_or_raise(timeout_s=15)


def test_acknowledged_records_survive_a_broker_kill(kafka_settings, local_kafka):
    if local_kafka is None:
        pytest.skip("needs the project's local broker (GEOFLUX_KAFKA_BOOTSTRAP points elsewhere)")
    codec = AvroCodec()
    topic = catalogue(kafka_settings)["geo.locations"].name
    producer = ReliableProducer(kafka_settings)
    sent = set()
    for i in range(2000):
        rec = dict(SAMPLES["LocationUpdate"], entity_id=f"e{i % 50}", ts_ms=i)
        producer.send(topic, codec.encode(topic, "LocationUpdate", rec), key=rec["entity_id"])
        sent.add((rec["entity_id"], i))
    assert producer.flush_or_raise() == 2000
    local_kafka.stop(kill=True)
    local_kafka.start()
    got = {(r["entity_id"], r["ts_ms"]) for r in
           (codec.decode(m.value(), "LocationUpdate")
            for m in consume_all(kafka_settings.bootstrap, topic, 2000, timeout_s=60))}
    assert got == sent


def test_registry_mode_is_read_by_confluents_own_deserializer(kafka_settings, schema_registry):
    codec = AvroCodec(HttpSchemaRegistry(schema_registry))
    topic = catalogue(kafka_settings)["geo.geofence-events"].name
    producer = ReliableProducer(kafka_settings)
    producer.send(topic, codec.encode(topic, "GeofenceEvent", SAMPLES["GeofenceEvent"]), key="g1")
    producer.flush_or_raise()
    [msg] = consume_all(kafka_settings.bootstrap, topic, 1)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": schema_registry}))
    value = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
    assert value == SAMPLES["GeofenceEvent"]


def test_old_records_read_by_new_readers_and_new_by_old(kafka_settings, schema_registry):
    """Schema evolution: a field added with a default is backward and forward compatible."""
    registry = HttpSchemaRegistry(schema_registry)
    codec = AvroCodec(registry)
    topic = catalogue(kafka_settings)["geo.locations"].name
    current = json.loads(open("schemas/avro/LocationUpdate.avsc").read())
    old = dict(current, fields=[f for f in current["fields"] if f["name"] != "produced_ms"])
    old_text = json.dumps(old)
    old_id = registry.register(f"{topic}-value", old_text)
    buf = io.BytesIO()
    buf.write(b"\x00" + old_id.to_bytes(4, "big"))
    old_record = {k: v for k, v in SAMPLES["LocationUpdate"].items() if k != "produced_ms"}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), old_record)
    # old writer -> new reader: the new field takes its default
    assert codec.decode(buf.getvalue(), "LocationUpdate") == dict(old_record, produced_ms=None)
    # new writer -> old reader: the extra field is skipped
    new_bytes = codec.encode(topic, "LocationUpdate", SAMPLES["LocationUpdate"])
    writer = fastavro.parse_schema(current)
    read_old = fastavro.schemaless_reader(io.BytesIO(new_bytes[5:]), writer,
                                          fastavro.parse_schema(old))
    assert read_old == old_record
