"""Geofence parsing and validation: every bad input has a reason."""

import pytest

from geoflux.errors import ValidationError
from streams.geofence import build_fence, circle, parse_feature
from streams.fence_index import FenceIndex, Zone

SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]


def feature(geometry, **props):
    return {"type": "Feature", "geometry": geometry,
            "properties": {"name": "f", "tenant_id": "t", **props}}


def parse(f, max_vertices=100):
    return parse_feature(f, max_vertices=max_vertices)


@pytest.mark.parametrize("geometry,props,reason", [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, {},
     "Self-intersection"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, {}, "unclosed ring"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [181, 0], [1, 1], [0, 0]]]}, {}, "longitude 181"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]}, {}, "latitude 91"),
    ({"type": "Polygon", "coordinates": []}, {}, "empty polygon"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0], [0, 0]]]}, {},
     "invalid geometry|empty geometry"),
    ({"type": "MultiPolygon", "coordinates": []}, {}, "empty multipolygon"),
    ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, {}, "not supported"),
    ({"type": "Point", "coordinates": [0, 0]}, {}, "radius_m"),
    ({"type": "Point", "coordinates": [0, 0]}, {"radius_m": -5}, "radius_m"),
    ({"type": "Polygon", "coordinates": [[["a", 0], [1, 0], [1, 1], [0, 0]]]}, {}, "numbers"),
    ({"type": "Polygon", "coordinates": [SQUARE]}, {"dwell_seconds": -1}, "dwell_seconds"),
])
def test_invalid_geometry_is_rejected_with_reason(geometry, props, reason):
    with pytest.raises(ValidationError, match=reason):
        parse(feature(geometry, **props))


def test_vertex_limit():
    ring = [[0, 0]] + [[1, i / 200] for i in range(200)] + [[0, 1], [0, 0]]
    with pytest.raises(ValidationError, match="exceed the limit of 100"):
        parse(feature({"type": "Polygon", "coordinates": [ring]}))


def test_missing_name_and_tenant():
    f = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE]}, "properties": {}}
    with pytest.raises(ValidationError, match="name"):
        parse(f)


def index_of(*specs):
    idx = FenceIndex()
    for i, (geometry, props) in enumerate(specs):
        idx.upsert(build_fence(f"g{i}", 1, parse(feature(geometry, **props), 10_000)))
    return idx


def test_boundary_counts_as_inside_and_holes_are_outside():
    donut = {"type": "Polygon", "coordinates": [
        [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]], [[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]]}
    idx = index_of((donut, {}))
    z = idx.zones([0, 0.5, 2, 1, 5], [2, 0.5, 2, 2, 5])
    assert z == [{"t/g0": Zone.INSIDE}, {"t/g0": Zone.INSIDE}, {}, {"t/g0": Zone.INSIDE}, {}]


def test_multipolygon_parts_both_count():
    mp = {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[5, 5], [6, 5], [6, 6], [5, 6], [5, 5]]]]}
    idx = index_of((mp, {}))
    assert idx.zones([0.5, 5.5, 3], [0.5, 5.5, 3]) == [{"t/g0": Zone.INSIDE}, {"t/g0": Zone.INSIDE}, {}]


def test_antimeridian_multipolygon_and_circle():
    split = {"type": "MultiPolygon", "coordinates": [
        [[[179, -1], [180, -1], [180, 1], [179, 1], [179, -1]]],
        [[[-180, -1], [-179, -1], [-179, 1], [-180, 1], [-180, -1]]]]}
    idx = index_of((split, {}), ({"type": "Point", "coordinates": [179.99, 10]}, {"radius_m": 5000}))
    z = idx.zones([179.5, -179.5, 0, 179.98, -179.99], [0, 0, 0, 10, 10])
    assert z == [{"t/g0": Zone.INSIDE}, {"t/g0": Zone.INSIDE}, {}, {"t/g1": Zone.INSIDE}, {"t/g1": Zone.INSIDE}]
    assert circle(179.99, 10, 5000).geom_type == "MultiPolygon"


def test_circle_radius_is_geodesic():
    idx = index_of(({"type": "Point", "coordinates": [10, 60]}, {"radius_m": 1000}))
    # at 60N one degree of longitude is ~55.8 km: 990 m east is inside, 1010 m is not
    deg_per_m = 1 / (111_320 * 0.5)
    z = idx.zones([10 + 990 * deg_per_m, 10 + 1015 * deg_per_m], [60, 60])
    assert z == [{"t/g0": Zone.INSIDE}, {}]


def test_hysteresis_band():
    idx = index_of(({"type": "Polygon", "coordinates": [SQUARE]}, {"hysteresis_m": 1000}))
    # 0.5 km inside the west edge, 0.5 km outside it, 5 km inside, 5 km outside (near the equator)
    z = idx.zones([0.0045, -0.0045, 0.045, -0.045], [0.5, 0.5, 0.5, 0.5])
    assert z == [{"t/g0": Zone.BAND}, {"t/g0": Zone.BAND}, {"t/g0": Zone.INSIDE}, {}]
