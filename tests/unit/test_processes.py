"""Every process against known answers, and every bad input with a clear reason."""

import pytest
from shapely.geometry import shape

from geoflux.errors import ValidationError
from streams.jobs.processes import PROCESSES, validate_inputs
from streams.jobs.runner import run_process

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
SMALL = {"type": "Polygon", "coordinates": [[[10, 50], [10.01, 50], [10.01, 50.01], [10, 50.01], [10, 50]]]}
LINE = {"type": "LineString", "coordinates": [[0, 0], [1, 0]]}


def run(pid, **inputs):
    return run_process(pid, inputs, lambda pct: None)


def test_geodesic_area_of_a_one_degree_square_at_the_equator():
    # PostGIS: SELECT ST_Area('POLYGON((0 0,1 0,1 1,0 1,0 0))'::geography) = 12308778361.469
    out = run("area-length", geometry=SQUARE)
    assert out["area_m2"] == pytest.approx(12308778361.469, rel=1e-6)
    assert run("area-length", geometry=LINE)["length_m"] == pytest.approx(111319.49, rel=1e-5)


def test_buffer_is_in_metres():
    out = shape(run("buffer", geometry={"type": "Point", "coordinates": [10, 60]}, distance_m=1000,
                    segments=32)["geometry"])
    area = run("area-length", geometry=out.__geo_interface__)["area_m2"]
    assert area == pytest.approx(3.14159 * 1000 ** 2, rel=0.01)


@pytest.mark.parametrize("pid,inputs,check", [
    ("intersection", {"geometry": SQUARE, "clip": {"type": "Polygon", "coordinates": [
        [[0.5, 0.5], [2, 0.5], [2, 2], [0.5, 2], [0.5, 0.5]]]}},
     lambda o: shape(o["geometry"]).area == pytest.approx(0.25)),
    ("convex-hull", {"geometry": {"type": "MultiPoint", "coordinates": [[0, 0], [2, 0], [1, 1], [1, 0.2]]}},
     lambda o: shape(o["geometry"]).area == pytest.approx(1.0)),
    ("simplify", {"geometry": {"type": "LineString", "coordinates": [[10, 50], [10.001, 50.00001], [10.002, 50]]},
                  "tolerance_m": 10}, lambda o: len(o["geometry"]["coordinates"]) == 2),
    ("reproject", {"geometry": {"type": "Point", "coordinates": [0, 0]}, "to_epsg": 3857},
     lambda o: o["geometry"]["coordinates"] == pytest.approx([0, 0], abs=1e-6) and o["crs"] == "EPSG:3857"),
    ("reproject", {"geometry": {"type": "Point", "coordinates": [180, 0]}, "to_epsg": 3857},
     lambda o: o["geometry"]["coordinates"][0] == pytest.approx(20037508.34, rel=1e-8)),
])
def test_known_answers(pid, inputs, check):
    assert check(run(pid, **inputs))


def test_union_dissolves_by_attribute():
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"k": "a"}, "geometry": SQUARE},
        {"type": "Feature", "properties": {"k": "a"}, "geometry": {"type": "Polygon", "coordinates": [
            [[1, 0], [2, 0], [2, 1], [1, 1], [1, 0]]]}},
        {"type": "Feature", "properties": {"k": "b"}, "geometry": SMALL}]}
    out = run("union", features=fc, by="k")["features"]["features"]
    assert [(f["properties"]["k"], f["properties"]["count"]) for f in out] == [("a", 2), ("b", 1)]
    assert shape(out[0]["geometry"]).area == pytest.approx(2.0)


def test_point_in_polygon_counts_and_joins_with_boundary_inside():
    polys = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "A"}, "geometry": SQUARE}]}
    pts = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"n": i}, "geometry": {"type": "Point", "coordinates": c}}
        for i, c in enumerate([[0.5, 0.5], [1, 0.5], [2, 2]])]}
    out = run("point-in-polygon", points=pts, polygons=polys)
    assert out["counts"] == {"A": 2}
    assert [f["properties"]["within"] for f in out["points"]["features"]] == [["A"], ["A"], []]


@pytest.mark.parametrize("pid,inputs,reason", [
    ("buffer", {"geometry": SQUARE}, "distance_m is required"),
    ("buffer", {"geometry": SQUARE, "distance_m": "far"}, "must be a number"),
    ("buffer", {"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
                "distance_m": 1}, "Self-intersection"),
    ("buffer", {"geometry": {"type": "Point", "coordinates": [200, 0]}, "distance_m": 1}, "outside WGS84"),
    ("buffer", {"geometry": SQUARE, "distance_m": 1, "colour": "red"}, "unknown input"),
    ("reproject", {"geometry": SQUARE, "to_epsg": 999999}, "not a known CRS"),
    ("union", {"features": {"type": "FeatureCollection", "features": []}}, "no features"),
    ("sleep", {"seconds": -1}, ">= 0"),
])
def test_bad_inputs_have_reasons(pid, inputs, reason):
    with pytest.raises(ValidationError, match=reason):
        run(pid, **inputs)


def test_every_process_describes_its_inputs():
    for p in PROCESSES.values():
        d = p.describe()
        assert d["id"] == p.id and set(d["inputs"]) == {i.name for i in p.inputs} and d["outputs"]
        assert "dismiss" in d["jobControlOptions"]
    with pytest.raises(ValidationError, match="inputs must be a JSON object"):
        validate_inputs(PROCESSES["buffer"], [1])
