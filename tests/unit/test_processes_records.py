"""Geoprocessing inputs and results, pinned where mutation testing found nothing holding them:
each refusal word for word (the API's 400 detail), the inclusive edges of ranges and of WGS84,
Features and FeatureCollections given where a geometry is asked, and each process's result
whole (what a client parses)."""

import pytest
from pyproj import Geod
from shapely.geometry import Point, shape

from geoflux.errors import ValidationError
from streams.jobs.processes import PROCESSES, input_size, validate_inputs

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
GEOD = Geod(ellps="WGS84")


def feature(geometry, **props):
    return {"type": "Feature", "geometry": geometry, "properties": props}


def collection(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def point(x, y, **props):
    return feature({"type": "Point", "coordinates": [x, y]}, **props)


def run(process_id, inputs, progress=None):
    proc = PROCESSES[process_id]
    return proc.run(validate_inputs(proc, inputs), progress or (lambda pct: None))


def refusal(process_id, inputs) -> str:
    with pytest.raises(ValidationError) as e:
        validate_inputs(PROCESSES[process_id], inputs)
    return str(e.value)


@pytest.mark.parametrize("process_id,inputs,reason", [
    ("buffer", [1], "inputs must be a JSON object"),
    ("buffer", {"geometry": 5, "distance_m": 1}, "input geometry: expected a GeoJSON geometry, Feature or FeatureCollection"),
    ("buffer", {"geometry": {"coordinates": [0, 0]}, "distance_m": 1},
     "input geometry: expected a GeoJSON geometry, Feature or FeatureCollection"),
    ("buffer", {"geometry": {"type": "Point", "coordinates": []}, "distance_m": 1}, "input geometry: empty geometry"),
    ("buffer", {"geometry": {"type": "Point", "coordinates": [180.5, 0]}, "distance_m": 1},
     "input geometry: coordinates outside WGS84 lon/lat range"),
    ("buffer", {"geometry": {"type": "Point", "coordinates": [0, -90.5]}, "distance_m": 1},
     "input geometry: coordinates outside WGS84 lon/lat range"),
    ("buffer", {"geometry": SQUARE, "distance_m": "5"}, "input distance_m must be a number"),
    ("buffer", {"geometry": SQUARE, "distance_m": float("inf")}, "input distance_m must be a number"),
    ("buffer", {"geometry": SQUARE, "distance_m": 1, "segments": 2.5}, "input segments must be an integer"),
    ("buffer", {"geometry": SQUARE, "distance_m": 1, "segments": 65}, "input segments must be <= 64"),
    ("buffer", {"geometry": SQUARE, "distance_m": 1, "segments": 0}, "input segments must be >= 1"),
    ("union", {"features": SQUARE}, "input features: expected a GeoJSON FeatureCollection"),
    ("union", {"features": collection()}, "input features: no features"),
    ("union", {"features": collection(feature(SQUARE), feature({"type": "Point", "coordinates": [0, 95]}))},
     "input features.features[1]: coordinates outside WGS84 lon/lat range"),
    ("union", {"features": collection(feature(SQUARE)), "by": ""}, "input by must be a non-empty string"),
    ("union", {"features": collection(feature(SQUARE)), "by": 5}, "input by must be a non-empty string"),
    ("reproject", {"geometry": SQUARE, "to_epsg": 3857, "from_epsg": 2.5}, "input from_epsg must be an integer"),
])
def test_each_input_refusal_word_for_word(process_id, inputs, reason):
    assert refusal(process_id, inputs) == reason


def test_range_edges_and_the_wgs84_edges_are_inside():
    proc = PROCESSES["buffer"]
    edge = {"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}
    parsed = validate_inputs(proc, {"geometry": edge, "distance_m": 1e6, "segments": 64})
    assert parsed["distance_m"] == 1e6 and parsed["segments"] == 64
    assert validate_inputs(proc, {"geometry": SQUARE, "distance_m": -1e6, "segments": 1})["segments"] == 1
    assert validate_inputs(PROCESSES["simplify"], {"geometry": SQUARE, "tolerance_m": 0})["tolerance_m"] == 0
    assert validate_inputs(proc, {"geometry": SQUARE, "distance_m": 1, "segments": 4.0})["segments"] == 4


def test_a_feature_or_a_collection_is_taken_where_a_geometry_is_asked():
    proc = PROCESSES["area-length"]
    assert validate_inputs(proc, {"geometry": feature(SQUARE)})["geometry"].equals(shape(SQUARE))
    two = collection(point(0, 0), point(1, 1))
    assert validate_inputs(proc, {"geometry": two})["geometry"].equals(shape(
        {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]}))


def test_input_size_counts_the_vertices_of_every_geometry_input():
    proc = PROCESSES["point-in-polygon"]
    parsed = validate_inputs(proc, {"points": collection(point(0, 0), point(1, 1)),
                                    "polygons": collection(feature(SQUARE))})
    assert input_size(parsed) == 7
    assert input_size(validate_inputs(PROCESSES["buffer"], {"geometry": SQUARE, "distance_m": 1})) == 5


def test_union_dissolves_by_a_property_and_reports_progress_per_group():
    seen = []
    west = {"type": "Polygon", "coordinates": [[[-1, 0], [0, 0], [0, 1], [-1, 1], [-1, 0]]]}
    out = run("union", {"features": collection(feature(SQUARE, k="b"), feature(west, k="b"), point(5, 5, k="a")),
                        "by": "k"}, seen.append)
    assert [f["properties"] for f in out["features"]["features"]] == [{"k": "a", "count": 1}, {"k": "b", "count": 2}]
    assert out["features"]["type"] == "FeatureCollection"
    assert [f["type"] for f in out["features"]["features"]] == ["Feature", "Feature"]
    assert shape(out["features"]["features"][1]["geometry"]).area == pytest.approx(2)
    assert seen == [50, 100]
    out = run("union", {"features": collection(feature(SQUARE), point(5, 5), point(6, 6))}, seen.append)
    assert [f["properties"] for f in out["features"]["features"]] == [{"group": "all", "count": 3}]
    assert seen[-1] == 100
    thirds = []
    run("union", {"features": collection(point(0, 0, k="a"), point(1, 1, k="b"), point(2, 2, k="c")), "by": "k"},
        thirds.append)
    assert thirds == [33, 66, 100]


def test_point_in_polygon_counts_and_tags_every_point_whole():
    polys = collection(feature(SQUARE, name="sq"),
                       feature({"type": "Polygon", "coordinates": [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]}))
    out = run("point-in-polygon", {"points": collection(point(0.5, 0.5, n=1), point(1, 1), point(9, 9)),
                                   "polygons": polys, "id_property": "name"})
    assert out == {"counts": {"sq": 0 + 2, "1": 0},
                   "points": {"type": "FeatureCollection", "features": [
                       {"type": "Feature", "geometry": {"type": "Point", "coordinates": (0.5, 0.5)},
                        "properties": {"n": 1, "within": ["sq"]}},
                       {"type": "Feature", "geometry": {"type": "Point", "coordinates": (1.0, 1.0)},
                        "properties": {"within": ["sq"]}},
                       {"type": "Feature", "geometry": {"type": "Point", "coordinates": (9.0, 9.0)},
                        "properties": {"within": []}}]}}
    by_id = run("point-in-polygon", {"points": collection(point(0.5, 0.5)),
                                     "polygons": collection(feature(SQUARE, id="a"), feature(SQUARE))})
    assert by_id["counts"] == {"a": 1, "1": 1}  # the default id property is `id`, else the position


def test_area_length_of_a_polygon_a_line_and_a_point():
    area, perimeter = GEOD.geometry_area_perimeter(shape(SQUARE))
    assert run("area-length", {"geometry": SQUARE}) == {"area_m2": abs(area), "perimeter_m": perimeter,
                                                        "length_m": 0.0}
    lines = {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 0]], [[0, 1], [1, 1]]]}
    got = run("area-length", {"geometry": lines})
    assert got["length_m"] == pytest.approx(GEOD.geometry_length(shape(lines))) and got["length_m"] > 200_000
    assert (got["area_m2"], got["perimeter_m"]) == (0.0, 0.0)
    assert run("area-length", {"geometry": {"type": "Point", "coordinates": [1, 2]}}) == {
        "area_m2": 0.0, "perimeter_m": 0.0, "length_m": 0.0}


def test_buffer_is_geodesic_with_the_segments_asked():
    far = {"type": "Point", "coordinates": [100.3, 60.7]}
    out = shape(run("buffer", {"geometry": far, "distance_m": 1000})["geometry"])
    assert len(out.exterior.coords) == 33  # 8 segments a quarter unless told
    for x, y in out.exterior.coords:
        assert GEOD.inv(100.3, 60.7, x, y)[2] == pytest.approx(1000, abs=0.5)
    assert len(shape(run("buffer", {"geometry": far, "distance_m": 1000, "segments": 2})["geometry"])
               .exterior.coords) == 9
    assert run("buffer", {"geometry": SQUARE, "distance_m": -1e6}) == {
        "geometry": {"type": "GeometryCollection", "geometries": []}}


def test_simplify_keeps_topology():
    # a ring with a hole close to its edge: simplifying without topology would let them cross
    outer = [[0, 0], [0.01, 0.0001], [0.02, 0], [0.02, 0.02], [0, 0.02], [0, 0]]
    hole = [[0.009, 0.0003], [0.011, 0.0003], [0.011, 0.001], [0.009, 0.001], [0.009, 0.0003]]
    out = shape(run("simplify", {"geometry": {"type": "Polygon", "coordinates": [outer, hole]},
                                 "tolerance_m": 50})["geometry"])
    assert out.is_valid and len(out.interiors) == 1


def test_reproject_defaults_to_wgs84_and_names_the_target():
    out = run("reproject", {"geometry": {"type": "Point", "coordinates": [10, 50]}, "to_epsg": 3857})
    assert out["crs"] == "EPSG:3857"
    assert out["geometry"]["coordinates"] == pytest.approx((1113194.9079, 6446275.8410))
    explicit = run("reproject", {"geometry": {"type": "Point", "coordinates": [10, 50]}, "from_epsg": 4326,
                                 "to_epsg": 3857})
    assert explicit == out
    with pytest.raises(ValidationError) as e:
        run("reproject", {"geometry": SQUARE, "from_epsg": 1, "to_epsg": 4326})
    assert str(e.value) == "input from_epsg: EPSG:1 is not a known CRS"
    with pytest.raises(ValidationError) as e:
        run("reproject", {"geometry": SQUARE, "to_epsg": 1})
    assert str(e.value) == "input to_epsg: EPSG:1 is not a known CRS"
    assert Point(out["geometry"]["coordinates"]).x > 1e6


def test_more_refusals_word_for_word():
    bad_member = collection(feature(SQUARE), feature({"type": "Point", "coordinates": [0, 95]}))
    assert refusal("area-length", {"geometry": bad_member}) == \
        "input geometry: coordinates outside WGS84 lon/lat range"
    for x, y in ((-180.5, 0), (0, 90.5)):
        assert refusal("area-length", {"geometry": {"type": "Point", "coordinates": [x, y]}}) == \
            "input geometry: coordinates outside WGS84 lon/lat range"
    assert refusal("area-length", {"geometry": {"type": "Polygon", "coordinates": "x"}}).startswith(
        "input geometry: not valid GeoJSON: ")


def test_input_size_adds_every_geometry_input():
    parsed = validate_inputs(PROCESSES["intersection"], {"geometry": SQUARE, "clip": {"type": "Point", "coordinates": [0, 0]}})
    assert input_size(parsed) == 6


def test_intersection_hull_and_sleep_results():
    clip = {"type": "Polygon", "coordinates": [[[0.5, 0], [2, 0], [2, 1], [0.5, 1], [0.5, 0]]]}
    assert shape(run("intersection", {"geometry": SQUARE, "clip": clip})["geometry"]).area == pytest.approx(0.5)
    hull = run("convex-hull", {"geometry": {"type": "MultiPoint", "coordinates": [[0, 0], [1, 0], [0, 1], [0.2, 0.2]]}})
    assert shape(hull["geometry"]).equals(shape({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1], [0, 0]]]}))
    seen = []
    assert run("sleep", {"seconds": 0}, seen.append) == {"slept_s": 0} and seen == [100]
    seen = []
    run("sleep", {"seconds": 0.2}, seen.append)
    assert seen == [50, 100]


def test_sleep_holds_the_worker_for_its_seconds_in_tenths(monkeypatch):
    slept, seen = [], []
    monkeypatch.setattr("streams.jobs.processes.time.sleep", slept.append)  # the holding, counted not waited
    assert run("sleep", {"seconds": 1}, seen.append) == {"slept_s": 1}
    assert slept == [0.1] * 10 and seen == list(range(10, 101, 10))


def test_a_process_describes_itself_as_ogc_api_processes_asks():
    d = PROCESSES["buffer"].describe()
    assert {k: d[k] for k in ("id", "title", "version", "keywords", "jobControlOptions", "outputTransmission")} == {
        "id": "buffer", "title": "Geodesic buffer", "version": "1.0.0", "keywords": ["vector", "buffer"],
        "jobControlOptions": ["sync-execute", "async-execute", "dismiss"], "outputTransmission": ["value"]}
    assert d["links"] == [{"href": "/processes/buffer", "rel": "self", "type": "application/json",
                           "title": "Geodesic buffer"}]
    assert d["inputs"]["segments"] == {"title": "segments", "description": "segments per quarter circle",
                                       "schema": {"type": "integer", "minimum": 1, "maximum": 64},
                                       "minOccurs": 0, "maxOccurs": 1}
    assert d["inputs"]["geometry"]["schema"] == {"$ref": "https://geojson.org/schema/Geometry.json"}
    assert d["inputs"]["geometry"]["minOccurs"] == 1
    assert d["outputs"] == {"geometry": {"title": "geometry", "description": "buffered geometry",
                                         "schema": {"type": "object"}}}
    assert PROCESSES["union"].describe()["inputs"]["features"]["schema"] == {
        "$ref": "https://geojson.org/schema/FeatureCollection.json"}
    assert PROCESSES["sleep"].describe()["inputs"]["seconds"]["schema"] == {"type": "number", "minimum": 0,
                                                                           "maximum": 14400}
    assert PROCESSES["union"].describe()["inputs"]["by"]["schema"] == {"type": "string"}


def test_simplify_never_collapses_a_polygon_and_point_in_polygon_tests_the_shape_not_its_box():
    tiny = {"type": "Polygon", "coordinates": [[[0, 0], [0.0001, 0], [0, 0.0001], [0, 0]]]}  # ~11 m
    assert not shape(run("simplify", {"geometry": tiny, "tolerance_m": 100})["geometry"]).is_empty
    triangle = collection(feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1], [0, 0]]]}, id="t"))
    out = run("point-in-polygon", {"points": collection(point(0.9, 0.9)), "polygons": triangle})
    assert out["counts"] == {"t": 0}


def test_reproject_takes_a_geometry_in_its_source_crs_not_only_lon_lat():
    """A geometry in metres (EPSG:3857) is read in from_epsg's coordinates; without from_epsg it
    is lon/lat and the same numbers are out of range."""
    from geoflux.errors import ValidationError
    from streams.jobs.processes import PROCESSES, validate_inputs

    p = PROCESSES["reproject"]
    metres = {"type": "Point", "coordinates": [1113194.9, 1118890.0]}
    out = p.run(validate_inputs(p, {"geometry": metres, "from_epsg": 3857, "to_epsg": 4326}), lambda _x: None)
    lon, lat = out["geometry"]["coordinates"]
    assert abs(lon - 10.0) < 1e-6 and abs(lat - 10.0) < 1e-6 and out["crs"] == "EPSG:4326"
    with pytest.raises(ValidationError, match="outside WGS84 lon/lat range"):
        validate_inputs(p, {"geometry": metres, "to_epsg": 3857})
    with pytest.raises(ValidationError, match="outside WGS84 lon/lat range"):
        validate_inputs(p, {"geometry": metres, "from_epsg": 4326, "to_epsg": 3857})
