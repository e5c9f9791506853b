"""`geoflux geofences import` of a real dataset, run as a person runs it, against the broker:
every feature it can is loaded, each refused one is reported with its reason, the exit code
says some were refused, and importing the file again updates instead of duplicating."""

import json
import math
import os
import subprocess
import sys

import pytest

from geoflux.settings import GeofenceSettings
from schemas.codec import AvroCodec
from geoflux.errors import NotFound
from services.control.geofence_registry import GeofenceRegistry
from tests.conftest import wait_for
from tests.unit.data.natural_earth import countries

pytestmark = pytest.mark.kafka

MAX_VERTICES = 30_000


def geoflux(*args, env):
    return subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True,
                          text=True, env=dict(os.environ, **env), timeout=300)


def square(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def ring_of(n, lon, lat, r=1.0):
    """A convex n-gon with full-precision coordinates, as real data has them."""
    pts = [[lon + r * math.cos(2 * math.pi * k / n), lat + r * math.sin(2 * math.pi * k / n)]
           for k in range(n)]
    return {"type": "Polygon", "coordinates": [pts + [pts[0]]]}


def named(name, geometry, **props):
    return {"type": "Feature", "geometry": geometry, "properties": {"name": name, **props}}


def dataset():
    """Natural Earth's 177 countries, 2,000 region cells, and the hard cases; returns the
    collection and {index: reason fragment} for every feature that must be refused."""
    features = countries()["features"]
    refused = {i: "invalid geometry: " for i, f in enumerate(features)
               if f["properties"]["name"] in ("Antarctica", "Fiji", "North Korea", "Russia", "Sudan")}
    features += [named(f"cell {i}", square(i % 50, -40 + i // 50, i % 50 + 1, -39 + i // 50),
                       code=f"C{i:04d}") for i in range(2000)]
    hard = [
        (named("Chukotka edge", {"type": "MultiPolygon", "coordinates": [[[
            [170, 60], [180.00000000000006, 60], [180.00000000000006, 70], [170, 70], [170, 60]]]]}),
         None),
        (named("past the edge", square(179, 0, 180.001, 1)), "longitude 180.001 out of range"),
        (named("someone else's", square(5, 5, 6, 6), tenant_id="other"),
         "'other' is not the tenant being imported ('acme')"),
        (named("too many vertices", ring_of(MAX_VERTICES + 1, 100, 10)),
         f"{MAX_VERTICES + 2} vertices exceed the limit of {MAX_VERTICES}"),
        (named("too big a record", ring_of(MAX_VERTICES - 1000, 100, -10)),
         "limit of one Kafka record (message.max.bytes)"),
        (named("cell 7", square(60, 0, 61, 1)), "id 'cell 7' is feature"),
        ({"type": "Point", "coordinates": [0, 0]}, "expected a GeoJSON Feature"),
    ]
    for f, reason in hard:
        if reason:
            refused[len(features)] = reason
        features.append(f)
    return {"type": "FeatureCollection", "features": features}, refused


def test_a_real_dataset_imports_what_it_can_and_reports_each_refusal(kafka_settings, tmp_path):
    env = {"GEOFLUX_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
           "GEOFLUX_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
           "GEOFLUX_KAFKA_PARTITIONS": str(kafka_settings.partitions),
           "GEOFLUX_GEOFENCE_MAX_VERTICES": str(MAX_VERTICES)}
    collection, refused = dataset()
    expected = len(collection["features"]) - len(refused)
    path = tmp_path / "world.geojson"
    path.write_text(json.dumps(collection))

    proc = geoflux("geofences", "import", str(path), "--tenant", "acme", env=env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.strip() == f"imported {expected} geofence(s), rejected {len(refused)}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("rejected ")]
    assert len(lines) == len(refused), proc.stderr
    for i, reason in refused.items():
        [line] = [ln for ln in lines
                  if ln.startswith((f"rejected feature {i} ", f"rejected feature {i}:"))]
        assert reason in line, line
    assert "rejected feature 18 (Russia): invalid geometry: Self-intersection" in proc.stderr

    registry = GeofenceRegistry(kafka_settings, GeofenceSettings(max_vertices=MAX_VERTICES),
                                AvroCodec())
    registry.start()
    try:
        fences, total = registry.list(limit=10_000)
        assert total == expected and {f.record["tenant_id"] for f in fences} == {"acme"}
        assert registry.get("250", "acme").record["name"] == "France"  # the dataset's own id
        assert registry.get("N. Cyprus").record["name"] == "N. Cyprus"  # no id: its name
        assert json.loads(registry.get("Chukotka edge").record["geometry"])["coordinates"][0][0][1] \
            == [180.0, 60.0]
        with pytest.raises(NotFound):
            registry.get("643")  # Russia, refused
        assert {f.record["version"] for f in fences} == {1}

        again = geoflux("geofences", "import", str(path), "--tenant", "acme", env=env)
        assert again.returncode == 1 and again.stdout == proc.stdout
        wait_for(lambda: registry.get("cell 1999").record["version"] == 2, 60,
                 what="the second import's versions")
        fences, total = registry.list(limit=10_000)
        assert total == expected and {f.record["version"] for f in fences} == {2}
    finally:
        registry.close()
