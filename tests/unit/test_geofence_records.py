"""Geofence parsing, pinned where mutation testing showed nothing held it: each rejection's
wording (a person reads it as the API's 422 detail or the import report), every field of a
FenceSpec and a Fence, the circle's shape and the antimeridian split's parts."""

import math

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import MultiPolygon, Point, Polygon

from geoflux.errors import ValidationError
from streams.geofence import (EDGE_NOISE_DEG, _aeqd, Fence, FenceSpec, _split_antimeridian, build_fence, circle,
                              fence_from_record, geometry_json, import_feature, parse_feature, reaches_a_pole,
                              snap_to_range)

SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
GEOD = Geod(ellps="WGS84")


def feature(geometry, **props):
    return {"type": "Feature", "geometry": geometry, "properties": {"name": "f", "tenant_id": "t", **props}}


def polygon(ring=SQUARE):
    return {"type": "Polygon", "coordinates": [ring]}


def refusal(f, **kw) -> str:
    with pytest.raises(ValidationError) as e:
        parse_feature(f, max_vertices=kw.pop("max_vertices", 100), **kw)
    return str(e.value)


@pytest.mark.parametrize("f,reason", [
    (["Feature"], "expected a GeoJSON Feature"),
    ({"type": "FeatureCollection", "geometry": polygon()}, "expected a GeoJSON Feature"),
    ({"type": "Feature", "geometry": polygon(), "properties": ["name"]}, "properties must be an object"),
    ({"type": "Feature", "properties": {}}, "feature has no geometry"),
    ({"type": "Feature", "geometry": {"coordinates": [SQUARE]}}, "feature has no geometry"),
    (feature({"type": "Point", "coordinates": [1]}, radius_m=5), "circle centre: a position must be [lon, lat]"),
    (feature({"type": "Point", "coordinates": [math.nan, 0]}, radius_m=5), "circle centre: coordinates must be finite"),
    (feature({"type": "Point", "coordinates": [0, math.inf]}, radius_m=5), "circle centre: coordinates must be finite"),
    (feature({"type": "Point", "coordinates": [0, 0]}, radius_m=500_000.5),
     "a circle needs properties.radius_m in (0, 500000] metres"),
    (feature({"type": "Point", "coordinates": [0, 0]}, radius_m=True),
     "a circle needs properties.radius_m in (0, 500000] metres"),
    (feature(polygon([[0, 0], [1, 0], [1, 1], "x", [0, 0]])), "polygon ring 0: a position must be [lon, lat]"),
    (feature({"type": "Polygon", "coordinates": [SQUARE, [[0, 0], [1, 0], [0, 0]]]}),
     "polygon ring 1: a linear ring needs at least 4 positions"),
    (feature({"type": "MultiPolygon", "coordinates": [[SQUARE], [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 91]]]]}),
     "polygon 1 ring 0: latitude 91 out of range [-90, 90]"),
    (feature({"type": "MultiPolygon", "coordinates": []}), "empty multipolygon"),
    (feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
     "geometry type 'LineString' is not supported: use Polygon, MultiPolygon or Point with properties.radius_m"),
    ({"type": "Feature", "geometry": polygon(), "properties": {"tenant_id": "t", "name": " "}},
     "properties.name is required"),
    ({"type": "Feature", "geometry": polygon(), "properties": {"name": "f", "tenant_id": 7}},
     "properties.tenant_id is required"),
    ({"type": "Feature", "geometry": polygon(), "properties": {"name": "f", "tenant_id": "  "}},
     "properties.tenant_id is required"),
    (feature(polygon(), dwell_seconds=0), "properties.dwell_seconds must be a positive number"),
    (feature(polygon(), dwell_seconds="5"), "properties.dwell_seconds must be a positive number"),
    (feature(polygon(), dwell_seconds=False), "properties.dwell_seconds must be a positive number"),
    (feature(polygon(), hysteresis_m=-0.5), "properties.hysteresis_m must be a non-negative number"),
])
def test_each_refusal_says_what_is_wrong_word_for_word(f, reason):
    assert refusal(f) == reason


def test_the_vertex_limit_counts_every_ring_and_admits_exactly_the_limit():
    f = feature({"type": "Polygon", "coordinates": [
        [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]]})
    assert parse_feature(f, max_vertices=10).geometry.geom_type == "Polygon"
    assert refusal(f, max_vertices=9) == "10 vertices exceed the limit of 9"


def test_a_spec_carries_every_field_and_the_other_properties_as_text():
    spec = parse_feature(feature(polygon(), name=" Depot ", tenant_id=" acme ", dwell_seconds=0.5,
                                 hysteresis_m=0, colour="red", floors=3, note=None, radius_m=9),
                         max_vertices=100)
    assert (spec.name, spec.tenant_id, spec.dwell_seconds, spec.hysteresis_m) == ("Depot", "acme", 0.5, 0.0)
    # null is no value; the fields the spec has its own place for are not repeated as text
    assert spec.properties == {"colour": "red", "floors": "3"}
    assert spec.geometry.geom_type == "Polygon" and spec.geometry.equals(Polygon(SQUARE))
    bare = parse_feature(feature(polygon()), max_vertices=100)
    assert (bare.dwell_seconds, bare.hysteresis_m, bare.properties) == (None, None, {})


def circle_vertices(geom):
    parts = geom.geoms if isinstance(geom, MultiPolygon) else [geom]
    return [c for p in parts for c in p.exterior.coords]


def test_a_circle_has_segments_vertices_at_its_radius_from_the_centre():
    lon, lat = 13.4049, 52.52
    for segments, ring in ((64, 65), (16, 17), (8, 17)):  # a quarter holds segments // 4, at least 4
        c = circle(lon, lat, 1000, segments)
        assert len(c.exterior.coords) == ring
        for x, y in c.exterior.coords:
            assert GEOD.inv(lon, lat, x, y)[2] == pytest.approx(1000, abs=0.05)
    assert len(circle(lon, lat, 1000).exterior.coords) == 65  # 64 segments unless told
    spec = parse_feature(feature({"type": "Point", "coordinates": [lon, lat]}, radius_m=1000),
                         max_vertices=100, circle_segments=16)
    assert len(spec.geometry.exterior.coords) == 17


def test_a_circle_across_the_antimeridian_keeps_its_vertices_on_both_sides():
    c = circle(179.99, 10, 5000, 16)
    east, west = c.geoms
    assert east.bounds[2] == 180 and west.bounds[0] == -180  # cut exactly at the line, no overlap
    assert east.bounds[0] > 179.9 and west.bounds[2] < -179.9
    for x, y in circle_vertices(c):
        if abs(x) != 180:
            assert GEOD.inv(179.99, 10, x, y)[2] == pytest.approx(5000, abs=0.05)


def test_a_ring_crossing_the_antimeridian_four_times_keeps_every_piece():
    # a comb west of the line whose two teeth reach across it: east of the line it is two pieces
    ring = [(-170, 0), (-170, 10), (175, 10), (175, 8), (-175, 8), (-175, 2), (175, 2), (175, 0), (-170, 0)]
    split = _split_antimeridian(ring)
    assert split.geom_type == "MultiPolygon" and len(split.geoms) == 3
    assert split.area == pytest.approx(Polygon([(x % 360, y) for x, y in ring]).area)


def test_a_ring_spanning_more_than_180_degrees_all_on_one_side_after_the_shift_is_one_polygon():
    split = _split_antimeridian([(-180, 0), (10, 0), (10, 1), (-180, 1), (-180, 0)])
    assert split.geom_type == "Polygon" and split.bounds == (10, 0, 180, 1)


def test_snap_to_range_admits_exactly_the_noise_past_an_edge():
    assert snap_to_range(EDGE_NOISE_DEG, 0) == 0.0
    assert snap_to_range(-180, 180) == -180.0 and snap_to_range(90, 90) == 90.0


def test_build_fence_carries_every_field_and_prepares_what_evaluators_test_against():
    spec = FenceSpec(Polygon(SQUARE), "Depot", "acme", 30.0, None, {"colour": "red"})
    f = build_fence("g1", 3, spec, default_hysteresis_m=0.5)  # half a metre is a band too
    assert (f.geofence_id, f.tenant_id, f.name, f.version, f.dwell_seconds, f.hysteresis_m) == (
        "g1", "acme", "Depot", 3, 30.0, 0.5)
    assert f.inner is not None and f.outer is not None and f.search_geometry is f.outer
    assert shapely.is_prepared(f.geometry) and shapely.is_prepared(f.inner)
    plain = build_fence("g1", 3, spec)
    assert (plain.hysteresis_m, plain.inner, plain.outer) == (0.0, None, None)
    assert plain.search_geometry is plain.geometry


def test_hysteresis_grows_and_shrinks_the_fence_by_metres_far_from_the_origin():
    # a square at 100E 60N: the local projection must be centred on the fence, not on (0, 0)
    ring = [(100, 60), (100.2, 60), (100.2, 60.1), (100, 60.1), (100, 60)]
    f = build_fence("g", 1, FenceSpec(Polygon(ring), "n", "t", None, 100.0))
    west_outer, west_inner = f.outer.bounds[0], f.inner.bounds[0]
    assert GEOD.inv(100, 60.05, west_outer, 60.05)[2] == pytest.approx(100, rel=0.01)
    assert GEOD.inv(100, 60.05, west_inner, 60.05)[2] == pytest.approx(100, rel=0.01)


def test_a_fence_read_back_from_its_record_is_the_fence_written():
    spec = parse_feature(feature(polygon(), dwell_seconds=30, hysteresis_m=200, colour="red"), max_vertices=100)
    rec = {"geofence_id": "g1", "version": 2, "name": spec.name, "tenant_id": spec.tenant_id,
           "geometry": geometry_json(spec.geometry), "dwell_seconds": 30.0, "hysteresis_m": None,
           "properties": {"colour": "red"}}
    f = fence_from_record(rec, default_hysteresis_m=50)
    assert isinstance(f, Fence) and f.geometry.equals(spec.geometry)
    assert (f.geofence_id, f.version, f.name, f.tenant_id, f.dwell_seconds, f.hysteresis_m) == (
        "g1", 2, "f", "t", 30.0, 50)
    assert fence_from_record(dict(rec, hysteresis_m=200.0)).hysteresis_m == 200.0
    plain = fence_from_record(rec)  # no hysteresis in the record and none by default: no band
    assert (plain.hysteresis_m, plain.inner, plain.outer) == (0.0, None, None)


# -- import -----------------------------------------------------------------------------------

def import_refusal(f, **kw) -> str:
    with pytest.raises(ValidationError) as e:
        import_feature(f, **kw)
    return str(e.value)


@pytest.mark.parametrize("f,kw,reason", [
    (["Feature"], {}, "expected a GeoJSON Feature"),
    ({"type": "Polygon"}, {}, "expected a GeoJSON Feature"),
    ({"type": "Feature", "properties": "x"}, {}, "properties must be an object"),
    ({"type": "Feature", "properties": {"NAME": " "}}, {"name_property": "NAME"},
     "properties.NAME must be a non-empty string or an integer, not ' '"),
    ({"type": "Feature", "properties": {"tenant_id": "t"}}, {},
     "properties.name is required (--name-property takes it from another property, e.g. NAME in Natural Earth)"),
    ({"type": "Feature", "properties": {"name": "n"}}, {},
     "properties.tenant_id is required (--tenant assigns one to features that carry none)"),
    ({"type": "Feature", "id": [1], "properties": {"name": "n"}}, {"tenant_id": "t"},
     "the feature's id must be a non-empty string or an integer, not [1]"),
    ({"type": "Feature", "properties": {"name": "n" * 201}}, {"tenant_id": "t"},
     f"id {'n' * 40!r}... is longer than 200 characters"),
])
def test_each_import_refusal_says_what_is_wrong_word_for_word(f, kw, reason):
    assert import_refusal(f, **kw) == reason


def test_import_takes_an_empty_tenant_as_none_and_an_id_of_exactly_200_characters():
    out, gid = import_feature({"type": "Feature", "properties": {"name": "n" * 200, "tenant_id": ""}},
                              tenant_id="acme")
    assert out["properties"]["tenant_id"] == "acme" and gid == "n" * 200


def test_an_integral_float_id_is_the_integer_text():
    _, gid = import_feature({"type": "Feature", "id": 3.0, "properties": {"name": "n", "tenant_id": "t"}})
    assert gid == "3"
    _, gid = import_feature({"type": "Feature", "properties": {"name": "n", "tenant_id": "t", "ISO": 4.0}},
                            id_property="ISO")
    assert gid == "4"


def test_a_circle_containing_a_pole_is_refused_instead_of_becoming_a_band_that_misses_its_centre():
    # before: (0, 89) with 200 km became a band from 87.2 to 89.2 degrees north, without its centre
    for lon, lat, radius in ((0, 89, 200_000), (179.9, 89.5, 100_000), (10, -89.5, 60_000)):
        f = feature({"type": "Point", "coordinates": [lon, lat]}, radius_m=radius)
        assert refusal(f) == "a circle may not contain a pole: draw the polar cap as a Polygon"
    to_pole = GEOD.inv(0, 89, 0, 90)[2]
    assert reaches_a_pole(0, 89, to_pole + 0.001) and not reaches_a_pole(0, 89, to_pole - 0.01)
    # on the edge counts: the pole at exactly the radius (as the projection measures it) is reached
    fwd, _ = _aeqd(0.0, 89.4)
    assert reaches_a_pole(0, 89.4, math.hypot(*fwd.transform(0, 90)))
    assert reaches_a_pole(0, 89.4, 70_000) and not reaches_a_pole(0, 89.4, 66_000)  # 66.8 km away
    near = parse_feature(feature({"type": "Point", "coordinates": [0, 88.5]}, radius_m=150_000), max_vertices=10)
    assert near.geometry.contains(Point(0, 88.5)) and near.geometry.bounds[3] < 90
