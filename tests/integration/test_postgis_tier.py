"""The PostGIS tier computes what the in-process tier computes, with side effects once per key."""

import asyncio
import uuid

import psycopg
import pytest
from shapely.geometry import shape

from connectors.compute.base import JobContext, JobTimedOut
from connectors.compute.postgis import PostgisTier
from geoflux.errors import PermanentError, TransientError
from services.devstack.local_process import free_port
from streams.jobs.runner import run_process

pytestmark = pytest.mark.postgres

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
PTS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"n": i}, "geometry": {"type": "Point", "coordinates": c}}
    for i, c in enumerate([[0.5, 0.5], [1, 0.5], [2, 2]])]}
POLYS = {"type": "FeatureCollection", "features": [
    {"type": "Feature", "properties": {"id": "A", "k": "x"}, "geometry": SQUARE},
    {"type": "Feature", "properties": {"id": "B", "k": "x"}, "geometry": {"type": "Polygon", "coordinates": [
        [[1, 0], [2, 0], [2, 1], [1, 1], [1, 0]]]}}]}

CASES = {
    "area-length": {"geometry": SQUARE},
    "buffer": {"geometry": {"type": "Point", "coordinates": [10, 60]}, "distance_m": 1000},
    "intersection": {"geometry": SQUARE, "clip": {"type": "Polygon", "coordinates": [
        [[0.5, 0.5], [2, 0.5], [2, 2], [0.5, 2], [0.5, 0.5]]]}},
    "union": {"features": POLYS, "by": "k"},
    "convex-hull": {"geometry": {"type": "MultiPoint", "coordinates": [[0, 0], [2, 0], [1, 1]]}},
    "simplify": {"geometry": {"type": "LineString", "coordinates": [[10, 50], [10.001, 50.00001], [10.002, 50]]},
                 "tolerance_m": 10},
    "point-in-polygon": {"points": PTS, "polygons": POLYS},
    "reproject": {"geometry": {"type": "Point", "coordinates": [10, 50]}, "to_epsg": 3857},
}


def run_pg(tier, pid, inputs, key=None, timeout_s=30):
    ctx = JobContext(str(uuid.uuid4()), key or str(uuid.uuid4()), pid, 1, timeout_s)
    return asyncio.run(tier.run(ctx, inputs, lambda p: None, lambda: False))


@pytest.fixture(scope="module")
def tier(postgres_dsn):
    t = PostgisTier(postgres_dsn)
    t.ensure_schema()
    return t


@pytest.mark.parametrize("pid", sorted(CASES))
def test_postgis_agrees_with_in_process(tier, pid):
    pg = run_pg(tier, pid, CASES[pid])
    local = run_process(pid, CASES[pid], lambda p: None)
    if pid == "area-length":
        assert pg["area_m2"] == pytest.approx(local["area_m2"], rel=1e-6)  # both geodesic on WGS84
        assert pg["perimeter_m"] == pytest.approx(local["perimeter_m"], rel=1e-6)
    elif pid == "point-in-polygon":
        assert pg["counts"] == local["counts"]
        assert [f["properties"]["within"] for f in pg["points"]["features"]] == \
               [f["properties"]["within"] for f in local["points"]["features"]]
    elif pid == "union":
        assert [f["properties"] for f in pg["features"]["features"]] == \
               [f["properties"] for f in local["features"]["features"]]
        assert shape(pg["features"]["features"][0]["geometry"]).area == pytest.approx(2.0)
    elif pid == "simplify":
        assert len(pg["geometry"]["coordinates"]) == len(local["geometry"]["coordinates"]) == 2
    elif pid == "buffer":  # PostGIS buffers geography in its own best projection: within 0.5 %
        a, b = shape(pg["geometry"]), shape(local["geometry"])
        assert a.symmetric_difference(b).area / b.area < 0.005
    else:
        assert shape(pg["geometry"]).equals_exact(shape(local["geometry"]), 1e-6), pid


def test_side_effects_once_per_idempotency_key(tier, postgres_dsn):
    key = f"k-{uuid.uuid4()}"
    first = run_pg(tier, "area-length", CASES["area-length"], key)
    again = run_pg(tier, "area-length", {"geometry": {"type": "Point", "coordinates": [0, 0]}}, key)
    assert again == first  # the committed result of the key, not a second computation
    with psycopg.connect(postgres_dsn) as conn:
        n = conn.execute("SELECT count(*) FROM geoflux_job_results WHERE idempotency_key = %s",
                         (key,)).fetchone()[0]
    assert n == 1


def test_statement_timeout_and_error_classes(tier):
    many = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"k": str(i % 7)},
         "geometry": {"type": "Point", "coordinates": [i % 90, (i * 7) % 45]}} for i in range(3000)]}
    big = {"type": "Polygon", "coordinates": [[[0, 0], [89, 0], [89, 44], [0, 44], [0, 0]]]}
    with pytest.raises(JobTimedOut):
        run_pg(tier, "buffer", {"geometry": big, "distance_m": 500000, "segments": 64}, timeout_s=0.001)
    with pytest.raises(PermanentError):
        run_pg(tier, "reproject", {"geometry": SQUARE, "to_epsg": 999999})
    down = PostgisTier(f"postgresql://geoflux@127.0.0.1:{free_port()}/postgres", connect_timeout_s=2)
    with pytest.raises(TransientError, match="PostgreSQL unavailable"):
        run_pg(down, "union", {"features": many})
