"""Real-world geometry: float noise at the edges of the map, and a whole dataset's features
made ready for import (tenant, name, stable ids), each refusal with its reason."""

import pytest

from geoflux.errors import ValidationError
from streams.evaluator_records import update_from_record
from streams.geofence import import_feature, parse_feature, snap_to_range
from tests.unit.data.natural_earth import countries


def square(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def feature(geometry, **props):
    return {"type": "Feature", "geometry": geometry,
            "properties": {"name": "f", "tenant_id": "t", **props}}


@pytest.mark.parametrize("value,bound,expected", [
    (180.00000000000006, 180, 180.0),  # Natural Earth's Russia
    (-180.00000000000006, 180, -180.0),
    (-90 - 1e-10, 90, -90.0),
    (90 + 9e-10, 90, 90.0),
    (179.9999999999, 180, 179.9999999999),  # inside: left as it is
    (180.0001, 180, None),
    (180.001, 180, None),
    (90 + 2e-9, 90, None),
])
def test_float_noise_at_an_edge_is_snapped_and_real_excess_refused(value, bound, expected):
    assert snap_to_range(value, bound) == expected


def test_natural_earth_russia_longitude_is_accepted_on_the_antimeridian():
    ring = [[170, 60], [180.00000000000006, 60], [180.00000000000006, 70], [170, 70], [170, 60]]
    spec = parse_feature(feature({"type": "MultiPolygon", "coordinates": [[ring]]}),
                         max_vertices=100)
    assert spec.geometry.bounds == (170.0, 60.0, 180.0, 70.0)
    south = parse_feature(feature(square(0, -90 - 1e-10, 10, -80)), max_vertices=100)
    assert south.geometry.bounds[1] == -90.0


@pytest.mark.parametrize("lon,lat,reason", [(180.0001, 0, "longitude 180.0001"),
                                            (0, -90.001, "latitude -90.001")])
def test_past_an_edge_by_more_than_noise_is_refused(lon, lat, reason):
    with pytest.raises(ValidationError, match=reason):
        parse_feature(feature(square(lon - 1, lat, lon, lat + 1)), max_vertices=100)


def test_location_updates_get_the_same_tolerance():
    upd = update_from_record({"entity_id": "e", "lon": 180.00000000000006, "lat": -90 - 1e-10,
                              "ts_ms": 1})
    assert (upd.lon, upd.lat) == (180.0, -90.0)
    with pytest.raises(ValidationError, match="out of range"):
        update_from_record({"entity_id": "e", "lon": 180.0001, "lat": 0, "ts_ms": 1})


def ne_feature(name="Narnia", **extra):
    """Shaped like Natural Earth's own GeoJSON: no id, no tenant, the name in NAME."""
    return {"type": "Feature", "geometry": square(0, 0, 1, 1),
            "properties": {"NAME": name, "ADM0_A3": "NAR", "ISO_A3": -99, **extra}}


def test_tenant_is_assigned_where_missing_and_another_tenant_refused():
    f, gid = import_feature(ne_feature(), tenant_id="acme", name_property="NAME")
    assert f["properties"]["tenant_id"] == "acme" and f["properties"]["name"] == "Narnia"
    assert gid == "Narnia"
    import_feature(ne_feature(tenant_id="acme"), tenant_id="acme", name_property="NAME")
    with pytest.raises(ValidationError, match="'other' is not the tenant being imported"):
        import_feature(ne_feature(tenant_id="other"), tenant_id="acme", name_property="NAME")
    with pytest.raises(ValidationError, match="--tenant"):
        import_feature(ne_feature(), name_property="NAME")


def test_ids_are_stable_property_then_feature_id_then_name():
    assert import_feature(ne_feature(), tenant_id="a", name_property="NAME",
                          id_property="ADM0_A3")[1] == "NAR"
    assert import_feature(dict(ne_feature(), id=643), tenant_id="a", name_property="NAME")[1] == "643"
    with pytest.raises(ValidationError, match="properties.ISO_A3"):  # -99 is an integer: fine
        import_feature(ne_feature(ISO_A3=None), tenant_id="a", name_property="NAME",
                       id_property="ISO_A3")
    with pytest.raises(ValidationError, match="--name-property"):
        import_feature(ne_feature(), tenant_id="a")
    with pytest.raises(ValidationError, match="longer than 200"):
        import_feature(ne_feature(name="x" * 201), tenant_id="a", name_property="NAME")


def test_the_whole_natural_earth_country_set_is_ready_or_refused_with_a_reason():
    """177 countries, no tenant: every one gets the tenant and a unique id; the ones refused
    (quantized outlines that cross themselves) each say where."""
    ready, refused = {}, {}
    for f in countries()["features"]:
        try:
            f, gid = import_feature(f, tenant_id="acme")
            spec = parse_feature(f, max_vertices=10_000)
            assert spec.tenant_id == "acme" and gid not in ready
            ready[gid] = spec
        except ValidationError as exc:
            refused[f["properties"]["name"]] = str(exc)
    assert len(ready) == 172 and "N. Cyprus" in ready and "643" not in ready  # 643: Russia
    assert sorted(refused) == ["Antarctica", "Fiji", "North Korea", "Russia", "Sudan"]
    assert all(r.startswith("invalid geometry: ") for r in refused.values())
    assert "Self-intersection[131.62" in refused["Russia"]
