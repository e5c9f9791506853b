"""docs/CONSUMERS.md's Python consumers, run as written: the confluent-kafka consumer group
with AvroDeserializer against Apicurio and the broker, and the registry-less fastavro decoder
against records our codec wrote. The code comes out of the page, so the page cannot drift."""

from __future__ import annotations

import re
import json
import threading
from pathlib import Path

import pytest

from connectors.kafka_producer import ReliableProducer
from geoflux.keys import scoped
from geoflux.settings import RegistrySettings
from schemas.avro_dir import AVRO_DIR
from schemas.catalogue import topic
from schemas.codec import AvroCodec, codec_from_settings
from tests.conftest import wait_for

pytestmark = pytest.mark.kafka

PAGE = Path(__file__).parents[2] / "docs" / "CONSUMERS.md"


def page_function(name: str):
    """The ```python block of the page that defines `name`, executed on its own."""
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    [code] = [b for b in blocks if f"def {name}(" in b]
    namespace: dict = {}
    exec(compile(code, f"{PAGE}:{name}", "exec"), namespace)
    return namespace[name]


def event(n: int, gid: str, event_type: str = "ENTER") -> dict:
    return {"event_id": f"{gid}-{n}-{event_type}", "event_type": event_type, "entity_id": f"truck-{n}",
            "geofence_id": gid, "geofence_version": 2, "tenant_id": "acme", "lon": 13.4, "lat": 52.5,
            "ts_ms": 1_700_000_000_000 + n, "source": f"loc:{n}", "reason": None,
            "produced_ms": 1_700_000_000_100 + n, "attributes": {"driver": "d"}}


def test_python_consumer_group_with_the_registry(kafka_settings, schema_registry):
    s = kafka_settings
    codec = codec_from_settings(RegistrySettings(url=schema_registry))
    t = topic("geo.geofence-events", s)
    events = [event(n, gid, kind) for gid in ("yard", "gate") for n in range(4)
              for kind in ("ENTER", "EXIT")]
    # repeats of yard's events, then a last yard event: once the consumer hands that over it
    # has read the repeats (one geofence, one partition, in order)
    repeats = [e for e in events if e["geofence_id"] == "yard"][:3]
    events.append(event(9, "yard", "DWELL"))
    producer = ReliableProducer(s)
    for e in events[:-1] + repeats + events[-1:]:
        producer.send(t, codec.encode(t, "GeofenceEvent", e), key=scoped("acme", e["geofence_id"]))
    producer.flush_or_raise()

    read_geofence_events = page_function("read_geofence_events")
    handled, done = [], threading.Event()

    def handle(key, ev):
        handled.append((key, ev))
        if len(handled) == len(events):
            done.set()

    worker = threading.Thread(target=read_geofence_events, daemon=True, kwargs=dict(
        bootstrap=s.bootstrap, registry_url=schema_registry, handle=handle, topic=t,
        group=f"{s.topic_prefix}docs-consumer", running=lambda: not done.is_set()))
    worker.start()
    try:
        wait_for(done.is_set, 60, what="every event handed over")
    finally:
        done.set()
        worker.join(30)
    assert not worker.is_alive()
    assert sorted(e["event_id"] for _, e in handled) == sorted(e["event_id"] for e in events)
    assert all(k == f"acme/{e['geofence_id']}" for k, e in handled)
    assert {e["event_id"]: e for _, e in handled} == {e["event_id"]: e for e in events}
    for gid in ("yard", "gate"):  # per-geofence order as written
        assert [e["event_id"] for k, e in handled if e["geofence_id"] == gid] == \
            [e["event_id"] for e in events if e["geofence_id"] == gid]


def test_registry_less_decoder_reads_our_records():
    decode = page_function("registry_less_decoder")(str(AVRO_DIR))
    codec = AvroCodec()  # registry-less: the stable ids
    e = event(1, "yard", "DWELL")
    assert decode(codec.encode("any-topic", "GeofenceEvent", e)) == e
    for bad in (b"\x01\x00\x00\x00\x01", b"\x00\x7f\xff\xff\xff" + b"x"):
        with pytest.raises(ValueError, match="not a record of a known schema"):
            decode(bad)


def test_registry_less_decoder_knows_every_released_version():
    """An id of each history version is one the decoder (and LocalSchemaRegistry) knows."""
    from schemas.codec import LocalSchemaRegistry, stable_schema_id

    stable_id = page_function("stable_id")
    local = LocalSchemaRegistry()
    for path in sorted(AVRO_DIR.glob("history/*/v*.avsc")):
        sid = stable_id(json.loads(path.read_text()))
        assert sid == stable_schema_id(path.read_text()), path
        local.schema_by_id(sid)  # raises for an id the product does not know
