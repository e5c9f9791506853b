"""Schema upgrades against the real broker, without and with a registry (Apicurio): records and
changelog state written by version N are read after an upgrade to N+1, and N reads N+1.

The upgrade is staged in a copy of the product's schemas: EntityState and ConfigRecord gain a
field with a default, and the snapshot tool records them as the next version, as a developer
would. The product's own schemas stay as they are.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request

import pytest

from connectors.kafka_producer import ReliableProducer
from geoflux.errors import PermanentError, ValidationError
from geoflux.settings import GeofenceSettings
from schemas.avro_dir import AVRO_DIR, AvroDir
from schemas.catalogue import topic
from schemas.codec import AvroCodec, HttpSchemaRegistry, stable_schema_id
from schemas.compat import read_problems
from schemas.history import snapshot
from streams.evaluator import EvaluatorStage
from tests.conftest import wait_for
from tests.integration.geo_helpers import (
    EventCollector,
    publish_fences,
    publish_locations,
    read_to_end,
)

pytestmark = pytest.mark.kafka

NEW_FIELDS = {"EntityState": {"name": "zone_hint", "type": ["null", "string"], "default": None},
              "ConfigRecord": {"name": "owner", "type": "string", "default": "ops"}}
ENTITIES = [f"e{i}" for i in range(6)]


def stage(root, name, change) -> None:
    path = root / f"{name}.avsc"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=1))


@pytest.fixture
def upgraded(tmp_path) -> AvroDir:
    """Version N+1: the product's schemas plus one new field with a default in two of them."""
    root = tmp_path / "avro-n1"
    shutil.copytree(AVRO_DIR, root)
    for name, new_field in NEW_FIELDS.items():
        stage(root, name, lambda doc, f=new_field: doc["fields"].append(f))
    written, refused = snapshot(AvroDir(root))
    assert refused == [] and sorted(p.parent.name for p in written) == sorted(NEW_FIELDS)
    return AvroDir(root)


def forget(schemas: AvroDir, name: str, version: int, tmp_path) -> AvroDir:
    """The same directory with one released version deleted from its history (a negative
    version counts from the newest: -2 is N when N+1 was just recorded)."""
    if version < 0:
        versions = sorted(int(p.stem[1:]) for p in (schemas.root / "history" / name).glob("v*.avsc"))
        version = versions[version]
    root = tmp_path / f"forgot-{name}-v{version}"
    shutil.copytree(schemas.root, root)
    (root / "history" / name / f"v{version}.avsc").unlink()
    return AvroDir(root)


def config(i: int) -> dict:
    return {"kind": "rule", "id": f"r{i}", "tenant_id": "acme", "version": 1,
            "body": json.dumps({"i": i}), "updated_ms": 1_700_000_000_000 + i, "deleted": False}


def send(kafka_settings, t: str, codec: AvroCodec, records: list[dict]) -> None:
    producer = ReliableProducer(kafka_settings)
    for rec in records:
        producer.send(t, codec.encode(t, "ConfigRecord", rec), key=rec["id"])
    assert producer.flush_or_raise() == len(records)


def schema_id_of(value: bytes) -> int:
    return int.from_bytes(value[1:5], "big")


# -- records ---------------------------------------------------------------------------------

def test_config_records_of_n_are_read_after_the_upgrade_without_a_registry(kafka_settings, upgraded,
                                                                          tmp_path):
    t = topic("alerts.rules", kafka_settings)
    n, n1 = AvroCodec(), AvroCodec(schemas=upgraded)
    send(kafka_settings, t, n, [config(i) for i in range(10)])
    send(kafka_settings, t, n1, [dict(config(i), owner="alice") for i in range(10, 15)])
    msgs = read_to_end(kafka_settings, t)
    assert len(msgs) == 15
    old = [m for m in msgs if schema_id_of(m.value()) == stable_schema_id(AvroDir().text("ConfigRecord"))]
    new = [m for m in msgs if m not in old]
    assert len(old) == 10 and len(new) == 5
    # backward: N+1 reads N's records, the new field takes its default
    assert sorted((n1.decode(m.value(), "ConfigRecord") for m in old), key=lambda r: r["id"]) == \
        sorted((dict(config(i), owner="ops") for i in range(10)), key=lambda r: r["id"])
    assert {n1.decode(m.value(), "ConfigRecord")["owner"] for m in new} == {"alice"}
    # the history is what makes it work: without N's entry the id is unknown
    with pytest.raises(ValidationError, match="unknown schema id"):
        AvroCodec(schemas=forget(upgraded, "ConfigRecord", -2, tmp_path)).decode(old[0].value(), "ConfigRecord")
    # forward without a registry: N cannot know N+1's schema, so it refuses with a reason (a
    # dead-letterable ValidationError, never a wrong record) until it is upgraded itself
    with pytest.raises(ValidationError, match="unknown schema id"):
        n.decode(new[0].value(), "ConfigRecord")


def ccompat(url: str, method: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def test_config_records_both_ways_with_a_registry_in_full_transitive_mode(kafka_settings, schema_registry,
                                                                         upgraded):
    t = topic("alerts.rules", kafka_settings)
    ccompat(schema_registry, "PUT", f"/config/{t}-value", {"compatibility": "FULL_TRANSITIVE"})
    n = AvroCodec(HttpSchemaRegistry(schema_registry))
    n1 = AvroCodec(HttpSchemaRegistry(schema_registry), schemas=upgraded)
    send(kafka_settings, t, n, [config(i) for i in range(5)])
    send(kafka_settings, t, n1, [dict(config(i), owner="alice") for i in range(5, 10)])  # registry accepts N+1
    msgs = read_to_end(kafka_settings, t)
    decoded_by_n = [n.decode(m.value(), "ConfigRecord") for m in msgs]
    decoded_by_n1 = [n1.decode(m.value(), "ConfigRecord") for m in msgs]
    # forward: N reads N+1's records (the writer schema comes from the registry), owner dropped
    assert {r["id"]: r for r in decoded_by_n} == {f"r{i}": config(i) for i in range(10)}
    # backward: N+1 reads N's records with the default, and its own with the value written
    assert {r["id"]: r for r in decoded_by_n1} == {f"r{i}": dict(config(i), owner="ops" if i < 5 else "alice")
                                    for i in range(10)}
    # what our checker refuses, the registry refuses too
    breaking = json.loads(upgraded.text("ConfigRecord"))
    breaking["fields"].append({"name": "region", "type": "string"})
    assert read_problems(breaking, upgraded.text("ConfigRecord"))
    with pytest.raises(PermanentError, match="409"):
        HttpSchemaRegistry(schema_registry).register(f"{t}-value", json.dumps(breaking))


# -- changelog state -------------------------------------------------------------------------

SQUARE_A = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
SQUARE_B = {"type": "Polygon", "coordinates": [[[2, 0], [3, 0], [3, 1], [2, 1], [2, 0]]]}


def fence(gid: str, geometry: dict) -> dict:
    return {"type": "Feature", "id": gid, "geometry": geometry,
            "properties": {"name": gid, "tenant_id": "t"}}


class RunningEvaluator:
    """The real evaluator stage in a thread: it restores its changelog on assignment."""

    def __init__(self, kafka_settings, codec: AvroCodec) -> None:
        self.ev = EvaluatorStage(kafka_settings, GeofenceSettings(), codec)
        self.failure: list[Exception] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.ev.run()
        except Exception as exc:  # noqa: BLE001 (the waiting test fails with it)
            self.failure.append(exc)

    def ready(self) -> bool:
        """Partitions assigned (and so state restored); raises what the stage died of."""
        try:
            assigned = self.ev.consumer.assignment()
        except RuntimeError:  # closed: the stage is on its way out
            assigned = None
        if assigned is None or not self.thread.is_alive():
            self.thread.join(30)
            raise AssertionError(f"the evaluator stopped: {self.failure!r}")
        return bool(assigned)

    def stop(self) -> None:
        self.ev.stop()
        self.thread.join(30)
        assert not self.thread.is_alive() and not self.failure, self.failure


def move(kafka_settings, codec, lon: float, lat: float) -> None:
    now = int(time.time() * 1000)
    publish_locations(kafka_settings, codec, [(e, lon, lat, now) for e in ENTITIES])


def phase(kafka_settings, codec, events, lon, lat, *expected: tuple[str, str]) -> EvaluatorStage:
    """Start the evaluator, let it restore, move every entity to (lon, lat), and wait until
    every entity has each expected (event type, geofence) event."""
    running = RunningEvaluator(kafka_settings, codec)
    try:
        wait_for(running.ready, 60, what="partitions assigned")
        move(kafka_settings, codec, lon, lat)
        wait_for(lambda: running.ready() and all(everyone(events, *e) for e in expected), 60,
                 what=f"every entity's {expected}")
    finally:
        running.stop()
    return running.ev


def everyone(events: EventCollector, kind: str, gid: str) -> bool:
    return {r["entity_id"] for r in events.snapshot()
            if (r["event_type"], r["geofence_id"]) == (kind, gid)} == set(ENTITIES)


def state_records(kafka_settings):
    """The evaluator changelog's state records (its stage metadata, keys starting "\\x00", is not state)."""
    return [m for m in read_to_end(kafka_settings, topic("geo.evaluator-state", kafka_settings))
            if not m.key().startswith(b"\x00")]


def changelog_ids(kafka_settings) -> set[int]:
    """The schema ids of every state record on the evaluator's changelog."""
    return {schema_id_of(m.value()) for m in state_records(kafka_settings) if m.value()}


def restore_all(kafka_settings, codec) -> dict:
    """Entity -> state, as a full restore replays the changelog: every record in order, each
    read through the evaluator's own record conversion with `codec`'s reader schema."""
    ev = EvaluatorStage(kafka_settings, GeofenceSettings(), codec)
    try:
        states = {}
        for m in state_records(kafka_settings):
            if m.value() is None:
                states.pop(m.key(), None)
            else:
                states[m.key()] = ev.state_from_record(codec.decode(m.value(), "EntityState"))
        return {st.entity_id: st for st in states.values()}
    finally:
        ev.close()


def test_evaluator_state_of_n_is_restored_after_the_upgrade_without_a_registry(kafka_settings, upgraded,
                                                                              tmp_path):
    n, n1 = AvroCodec(), AvroCodec(schemas=upgraded)
    fences = publish_fences(kafka_settings, [fence("A", SQUARE_A), fence("B", SQUARE_B)], n)
    events = EventCollector(kafka_settings, n)
    try:
        phase(kafka_settings, n, events, 0.5, 0.5, ("ENTER", "A"))
        n_id = stable_schema_id(AvroDir().text("EntityState"))
        assert changelog_ids(kafka_settings) == {n_id}
        # upgrade: N+1 restores N's state (inside A), so moving to B is an EXIT from A
        ev = phase(kafka_settings, n1, events, 2.5, 0.5, ("EXIT", "A"), ("ENTER", "B"))
        assert ev.stats.restored_partitions == kafka_settings.partitions
        n1_id = stable_schema_id(upgraded.text("EntityState"))
        assert changelog_ids(kafka_settings) == {n_id, n1_id}
        restored = restore_all(kafka_settings, n1)
        assert {e: sorted(s.memberships) for e, s in restored.items()} == {e: ["B"] for e in ENTITIES}
        # without N's history entry the same restore cannot name N's writer schema
        with pytest.raises(ValidationError, match=f"unknown schema id {n_id} "):
            restore_all(kafka_settings, AvroCodec(schemas=forget(upgraded, "EntityState", -2, tmp_path)))
        # rolling back to N without a registry: N+1's state is unknown to N, refused with a reason
        with pytest.raises(ValidationError, match=f"unknown schema id {n1_id} "):
            restore_all(kafka_settings, n)
        assert len(events.unique_ids()) == len(events.snapshot())
    finally:
        events.close()
        fences.close()


def test_evaluator_state_across_an_upgrade_and_a_rollback_with_a_registry(kafka_settings, schema_registry,
                                                                         upgraded):
    n = AvroCodec(HttpSchemaRegistry(schema_registry))
    n1 = AvroCodec(HttpSchemaRegistry(schema_registry), schemas=upgraded)
    fences = publish_fences(kafka_settings, [fence("A", SQUARE_A), fence("B", SQUARE_B)], n)
    events = EventCollector(kafka_settings, n)
    try:
        phase(kafka_settings, n, events, 0.5, 0.5, ("ENTER", "A"))
        phase(kafka_settings, n1, events, 2.5, 0.5, ("EXIT", "A"), ("ENTER", "B"))
        # rollback: N restores the state N+1 wrote (inside B), so leaving B is an EXIT
        ev = phase(kafka_settings, n, events, 5.0, 5.0, ("EXIT", "B"))
        assert ev.stats.restored_partitions == kafka_settings.partitions
        assert len(changelog_ids(kafka_settings)) == 2  # N's and N+1's registry ids
        assert len(events.unique_ids()) == len(events.snapshot()) == 4 * len(ENTITIES)
    finally:
        events.close()
        fences.close()
