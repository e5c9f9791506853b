"""Reprocessing: `geoflux replay --group` re-runs the stateless CEP re-key byte for byte, refuses
a running group, and --dry-run changes nothing; a fresh evaluator in a second namespace turns
the same fences and location records into the same events (ids and Avro bytes)."""

import time
import uuid

import pytest

from connectors.kafka_admin import apply
from connectors.kafka_producer import ReliableProducer
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from tests.conftest import wait_for
from tests.integration.alert_helpers import geofence_event, publish_events
from tests.integration.geo_helpers import lag_is_zero, publish_fences, start_cli, start_worker, stop
from tests.integration.replay_helpers import committed, geoflux, read_raw

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
GROUP = "geoflux-cep-rekey"


def batch(first: int, n: int, t0: int) -> list[dict]:
    """Each entity visits one geofence, times rising: its order through the re-key is fixed."""
    out = []
    for i in range(first, first + n):
        e = geofence_event(i, entity=f"e{i % 8}", geofence=f"g{i % 8}",
                           event_type=("ENTER", "EXIT")[(i // 8) % 2])
        e["ts_ms"] = t0 + i * 10
        out.append(e)
    return out


def per_key(records) -> dict[tuple[int, bytes], list[bytes]]:
    out: dict[tuple[int, bytes], list[bytes]] = {}
    for p, _o, k, v in records:
        out.setdefault((p, k), []).append(v)
    return out


def test_group_reset_reprocesses_rekey_byte_for_byte(kafka_settings, tmp_path):
    s, codec = kafka_settings, AvroCodec()
    t_in = topic("geo.geofence-events", s)
    t0 = int(time.time() * 1000)
    first, second = batch(0, 24, t0), batch(24, 24, t0)
    publish_events(s, codec, first)
    mid = int(time.time() * 1000) + 1
    wait_for(lambda: time.time() * 1000 > mid + 5, 1, what="the clock to pass the boundary")
    publish_events(s, codec, second)
    worker = start_cli(s, ["worker", "cep", "--mode", "rekey"], "rekey-1", tmp_path)
    try:
        wait_for(lambda: len(read_raw(s, "geo.cep-input")) == 48, 60, what="48 re-keyed events")
        wait_for(lambda: lag_is_zero(s, GROUP, "geo.geofence-events"), 30, what="offsets committed")
        refused = geoflux(s, "replay", "--group", GROUP, "--to-earliest")
        assert refused.returncode != 0 and "active member" in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1  # one line, no traceback
    finally:
        stop(worker)
    run1 = read_raw(s, "geo.cep-input")
    before = committed(s, GROUP)
    dry = geoflux(s, "replay", "--group", GROUP, "--topic", "geo.geofence-events",
                  "--to-datetime", str(mid), "--dry-run")
    assert dry.returncode == 0 and "dry run" in dry.stdout, dry.stderr
    assert committed(s, GROUP) == before
    reset = geoflux(s, "replay", "--group", GROUP, "--to-datetime", str(mid))
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout == dry.stdout.replace(" (dry run, nothing changed)", "")
    # each partition now starts at its first record of the second batch
    first_ids = {e["event_id"] for e in first}
    starts = {}
    for p, o, _k, v in read_raw(s, "geo.geofence-events"):
        if codec.decode(v, "GeofenceEvent")["event_id"] not in first_ids:
            starts.setdefault(p, o)
    assert {p: o for (t, p), o in committed(s, GROUP).items() if t == t_in} == starts
    for p, o in starts.items():
        assert f"{t_in}[{p}]: {before[(t_in, p)]} -> {o}" in reset.stdout

    worker = start_cli(s, ["worker", "cep", "--mode", "rekey"], "rekey-2", tmp_path)
    try:
        wait_for(lambda: len(read_raw(s, "geo.cep-input")) == 72, 60, what="24 re-keyed again")
    finally:
        stop(worker)
    seen = {(p, o) for p, o, _k, _v in run1}
    run2 = [r for r in read_raw(s, "geo.cep-input") if (r[0], r[1]) not in seen]
    second_ids = {e["event_id"] for e in second}
    run1_second = [r for r in run1 if codec.decode(r[3], "GeofenceEvent")["event_id"] in second_ids]
    assert len(run2) == len(run1_second) == 24
    assert per_key(run2) == per_key(run1_second)  # key and value bytes, per key in order

    earliest = geoflux(s, "replay", "--group", GROUP, "--to-earliest")
    assert earliest.returncode == 0, earliest.stderr
    assert all(o == 0 for o in committed(s, GROUP).values())
    bad = geoflux(s, "replay", "--group", GROUP, "--to-offset", "0:5")
    assert bad.returncode != 0 and "--topic" in bad.stderr


def _fence(gid, x):
    return {"type": "Feature", "id": gid, "properties": {"name": gid, "tenant_id": "t"},
            "geometry": {"type": "Polygon", "coordinates": [[[x, 0], [x + 1, 0], [x + 1, 1], [x, 1], [x, 0]]]}}


def test_same_history_same_events_in_a_fresh_namespace(kafka_settings, tmp_path):
    """The evaluator is stateful, so it is reprocessed by running the same inputs through a
    fresh instance (its own topics, changelog and group), not by resetting its group."""
    codec = AvroCodec()
    other = KafkaSettings(bootstrap=kafka_settings.bootstrap, partitions=kafka_settings.partitions,
                          topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    apply(other)
    fences = [_fence(f"f{i}", 2 * i) for i in range(3)]
    t0 = 1_700_000_000_000
    rows = [(f"v{v}", 2 * k + 0.5 if (k + v) % 2 else 2 * k - 0.5, 0.5, t0 + (v * 10 + k) * 1000)
            for v in range(6) for k in range(4)]
    workers, registries = [], []
    try:
        for s in (kafka_settings, other):
            registries.append(publish_fences(s, fences, codec))
            t = topic("geo.locations", s)
            p = ReliableProducer(s)
            for entity, lon, lat, ts in rows:  # the same records: produced_ms is copied into events
                rec = {"entity_id": entity, "tenant_id": "t", "lon": lon, "lat": lat, "ts_ms": ts,
                       "attributes": {}, "produced_ms": ts + 5}
                p.send(t, codec.encode(t, "LocationUpdate", rec), key=f"t/{entity}")
            p.flush_or_raise()
            logs = tmp_path / s.topic_prefix.rstrip(".")
            logs.mkdir()
            workers.append(start_worker(s, "0", logs))
        for s in (kafka_settings, other):
            wait_for(lambda: lag_is_zero(s), 60, what=f"evaluator {s.topic_prefix} caught up")
    finally:
        for w in workers:
            stop(w)
        for r in registries:
            r.close()
    a, b = (read_raw(s, "geo.geofence-events") for s in (kafka_settings, other))
    assert len(a) == len(b) > 10
    ids = [{codec.decode(v, "GeofenceEvent")["event_id"] for *_x, v in r} for r in (a, b)]
    assert ids[0] == ids[1]
    # Avro bytes equal; per (geofence, entity) in the same order (different entities may
    # interleave differently within a geofence: they come from different location partitions)
    def per_pair(records):
        out = {}
        for _p, _o, k, v in records:
            out.setdefault((k, codec.decode(v, "GeofenceEvent")["entity_id"]), []).append(v)
        return out
    assert per_pair(a) == per_pair(b)
