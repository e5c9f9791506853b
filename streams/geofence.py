"""Geofence definitions: GeoJSON in, validated shapely geometry out. Pure: no I/O.

Boundary semantics: a point on a fence's boundary is inside (shapely `intersects`).
Circles (a Point with `radius_m`) become geodesic polygons built in an azimuthal equidistant
projection around their centre; one that crosses the antimeridian is split into a
MultiPolygon on both sides of it, as RFC 7946 asks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Point, Polygon, box, mapping, shape

from geoflux.errors import ValidationError

WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True, slots=True)
class FenceSpec:
    """Validated input for a geofence version, before it is given an id and version."""

    geometry: Polygon | MultiPolygon
    name: str
    tenant_id: str
    dwell_seconds: float | None = None
    hysteresis_m: float | None = None
    properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fence:
    """A geofence version as evaluators hold it. `inner`/`outer` exist only with hysteresis."""

    geofence_id: str
    tenant_id: str
    name: str
    version: int
    geometry: Polygon | MultiPolygon
    dwell_seconds: float | None
    hysteresis_m: float
    inner: Polygon | MultiPolygon | None = None
    outer: Polygon | MultiPolygon | None = None

    @property
    def search_geometry(self):
        return self.outer if self.outer is not None else self.geometry


@lru_cache(maxsize=4096)
def _aeqd(lon: float, lat: float) -> tuple[Transformer, Transformer]:
    local = CRS.from_proj4(f"+proj=aeqd +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m")
    return (Transformer.from_crs(WGS84, local, always_xy=True),
            Transformer.from_crs(local, WGS84, always_xy=True))


def _split_antimeridian(coords: list[tuple[float, float]]) -> Polygon | MultiPolygon:
    """A ring whose longitudes jump by more than 180 degrees crosses the antimeridian; one that
    spans exactly 180 (a hemisphere-wide fence) is taken as drawn. The result is the pieces on
    each side of the line, cut exactly at +-180: a Polygon when only one piece is left (a ring
    spanning more than 180 degrees that lies on one side once shifted), else a MultiPolygon."""
    lons = [x for x, _ in coords]
    if max(lons) - min(lons) <= 180:
        return Polygon(coords)
    shifted = Polygon([(x + 360 if x < 0 else x, y) for x, y in coords])
    east = shifted.intersection(box(0, -90, 180, 90))
    west = shapely.transform(shifted.intersection(box(180, -90, 540, 90)), lambda x, y: (x - 360, y),
                             interleaved=False)
    parts = [g for g in (east, west) if not g.is_empty]
    polys = [p for g in parts for p in (g.geoms if hasattr(g, "geoms") else [g])
             if p.geom_type == "Polygon"]
    return MultiPolygon(polys) if len(polys) > 1 else polys[0]


def circle(lon: float, lat: float, radius_m: float, segments: int = 64) -> Polygon | MultiPolygon:
    """A geodesic circle: `segments` vertices (a quarter holds segments // 4, at least 4), each
    `radius_m` from the centre. The centre is rounded to 1e-7 degrees (about 1 cm) so nearby
    circles share a cached projection."""
    fwd, inv = _aeqd(round(lon, 7), round(lat, 7))
    local = Point(0, 0).buffer(radius_m, quad_segs=max(4, segments // 4))
    xs, ys = inv.transform(*local.exterior.coords.xy)
    return _split_antimeridian(list(zip(xs, ys)))


def reaches_a_pole(lon: float, lat: float, radius_m: float) -> bool:
    """Whether a pole lies within `radius_m` of the centre (on the edge counts, as a point on a
    fence's boundary is inside)."""
    fwd, _inv = _aeqd(round(lon, 7), round(lat, 7))
    return any(math.hypot(*fwd.transform(lon, pole)) <= radius_m for pole in (90.0, -90.0))


def buffer_m(geom: Polygon | MultiPolygon, metres: float) -> Polygon | MultiPolygon:
    """Grows (metres > 0) or shrinks a fence by a distance in metres, in a local projection."""
    c = geom.centroid
    fwd, inv = _aeqd(round(c.x, 5), round(c.y, 5))
    local = shapely.transform(geom, fwd.transform, include_z=None, interleaved=False)
    return shapely.transform(local.buffer(metres), inv.transform, interleaved=False)


EDGE_NOISE_DEG = 1e-9  # about 0.1 mm: what float arithmetic leaves at the edges of real datasets


def snap_to_range(value: float, bound: float) -> float | None:
    """`value` within [-bound, bound], or past an edge by float noise only (at most
    EDGE_NOISE_DEG: Natural Earth's Russia reaches longitude 180.00000000000006) and then
    snapped to it; None when really out of range."""
    if -bound <= value <= bound:
        return float(value)
    if abs(value) - bound <= EDGE_NOISE_DEG:
        return math.copysign(bound, value)
    return None


def _check_position(pos, where: str) -> tuple[float, float]:
    if not isinstance(pos, (list, tuple)) or len(pos) < 2:
        raise ValidationError(f"{where}: a position must be [lon, lat]")
    lon, lat = pos[0], pos[1]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lon, lat)):
        raise ValidationError(f"{where}: coordinates must be numbers")
    if not (math.isfinite(lon) and math.isfinite(lat)):
        raise ValidationError(f"{where}: coordinates must be finite")
    x, y = snap_to_range(lon, 180), snap_to_range(lat, 90)
    if x is None:
        raise ValidationError(f"{where}: longitude {lon} out of range [-180, 180]")
    if y is None:
        raise ValidationError(f"{where}: latitude {lat} out of range [-90, 90]")
    return x, y


def _check_rings(rings, where: str) -> list[list[tuple[float, float]]]:
    """The rings of a polygon, checked, as 2D positions snapped into range."""
    if not isinstance(rings, (list, tuple)) or not rings:
        raise ValidationError(f"{where}: empty polygon")
    out = []
    for i, ring in enumerate(rings):
        label = f"{where} ring {i}"
        if not isinstance(ring, (list, tuple)) or len(ring) < 4:
            raise ValidationError(f"{label}: a linear ring needs at least 4 positions")
        positions = [_check_position(p, label) for p in ring]
        if positions[0] != positions[-1]:
            raise ValidationError(f"{label}: unclosed ring (first and last positions differ)")
        out.append(positions)
    return out


def parse_feature(feature: dict, *, max_vertices: int, max_radius_m: float = 500_000.0,
                  circle_segments: int = 64) -> FenceSpec:
    """Validates a GeoJSON Feature; raises ValidationError with the reason."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValidationError("expected a GeoJSON Feature")
    geom = feature.get("geometry")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ValidationError("properties must be an object")
    if not isinstance(geom, dict) or "type" not in geom:
        raise ValidationError("feature has no geometry")
    gtype, coords = geom.get("type"), geom.get("coordinates")
    if gtype == "Point":
        lon, lat = _check_position(coords, "circle centre")
        radius = props.get("radius_m")
        if not isinstance(radius, (int, float)) or isinstance(radius, bool) or not 0 < radius <= max_radius_m:
            raise ValidationError(f"a circle needs properties.radius_m in (0, {max_radius_m:g}] metres")
        if reaches_a_pole(lon, lat, float(radius)):
            # in longitude/latitude such a circle is a cap up to the pole, not a ring: the
            # antimeridian split would turn it into a band that misses its own centre
            raise ValidationError("a circle may not contain a pole: draw the polar cap as a Polygon")
        shp = circle(lon, lat, float(radius), circle_segments)
    elif gtype in ("Polygon", "MultiPolygon"):
        if gtype == "Polygon":
            polygons = [_check_rings(coords, "polygon")]
        elif not isinstance(coords, (list, tuple)) or not coords:
            raise ValidationError("empty multipolygon")
        else:
            polygons = [_check_rings(p, f"polygon {i}") for i, p in enumerate(coords)]
        n = sum(len(ring) for rings in polygons for ring in rings)
        if n > max_vertices:
            raise ValidationError(f"{n} vertices exceed the limit of {max_vertices}")
        parts = [Polygon(rings[0], rings[1:]) for rings in polygons]
        shp = parts[0] if gtype == "Polygon" else MultiPolygon(parts)
    else:
        raise ValidationError(f"geometry type {gtype!r} is not supported: use Polygon, "
                              "MultiPolygon or Point with properties.radius_m")
    if shp.is_empty:
        raise ValidationError("empty geometry")
    if not shp.is_valid:
        raise ValidationError(f"invalid geometry: {shapely.is_valid_reason(shp)}")
    if shp.area == 0:
        raise ValidationError("empty geometry (zero area)")
    name = props.get("name")
    tenant = props.get("tenant_id")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("properties.name is required")
    if not isinstance(tenant, str) or not tenant.strip():
        raise ValidationError("properties.tenant_id is required")
    dwell = _optional_positive(props, "dwell_seconds")
    hyst = _optional_positive(props, "hysteresis_m", allow_zero=True)
    extra = {k: str(v) for k, v in props.items()  # null is no value, not the text "None"
             if v is not None
             and k not in {"name", "tenant_id", "dwell_seconds", "hysteresis_m", "radius_m"}}
    return FenceSpec(shp, name.strip(), tenant.strip(), dwell, hyst, extra)


def import_feature(feature, *, tenant_id: str | None = None, id_property: str | None = None,
                   name_property: str | None = None) -> tuple[dict, str]:
    """A dataset's feature made ready for the registry: (the feature with its tenant and name
    resolved, its fence id). Raises ValidationError with the reason.

    - tenant: `tenant_id` is given to a feature that carries none; one that carries another
      is refused (a file cannot write into someone else's tenant).
    - name: `properties[name_property]` when given (Natural Earth has NAME, not name).
    - id, stable so a second import of the same file updates instead of duplicating:
      `properties[id_property]` when given, else the feature's own `id`, else its name; at most
      200 characters. An integral float id (3.0, as some files write numbers) is the text "3".
    """
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValidationError("expected a GeoJSON Feature")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ValidationError("properties must be an object")
    props = dict(props)
    if name_property is not None:
        props["name"] = _text(props.get(name_property), f"properties.{name_property}")
    elif not isinstance(props.get("name"), str) or not props["name"].strip():
        raise ValidationError("properties.name is required (--name-property takes it from "
                              "another property, e.g. NAME in Natural Earth)")
    own = props.get("tenant_id")
    if own is None or own == "":
        if tenant_id is None:
            raise ValidationError("properties.tenant_id is required (--tenant assigns one to "
                                  "features that carry none)")
        props["tenant_id"] = tenant_id
    elif tenant_id is not None and own != tenant_id:
        raise ValidationError(f"properties.tenant_id {own!r} is not the tenant being imported "
                              f"({tenant_id!r})")
    if id_property is not None:
        gid = _text(props.get(id_property), f"properties.{id_property}")
    elif feature.get("id") is not None:
        gid = _text(feature["id"], "the feature's id")
    else:
        gid = props["name"].strip()
    if len(gid) > 200:
        raise ValidationError(f"id {gid[:40]!r}... is longer than 200 characters")
    return dict(feature, properties=props), gid


def _text(value, where: str) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ValidationError(f"{where} must be a non-empty string or an integer, not {value!r}")
    return str(value).strip()


def _optional_positive(props: dict, key: str, allow_zero: bool = False) -> float | None:
    v = props.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or (v == 0 and not allow_zero):
        raise ValidationError(f"properties.{key} must be a {'non-negative' if allow_zero else 'positive'} number")
    return float(v)


def build_fence(geofence_id: str, version: int, spec: FenceSpec, default_hysteresis_m: float = 0.0) -> Fence:
    """The fence evaluators hold, its geometries prepared. Any hysteresis above 0 m (the spec's,
    else the default) gives it an inner and an outer ring that far in and out."""
    h = spec.hysteresis_m if spec.hysteresis_m is not None else default_hysteresis_m
    inner = outer = None
    if h > 0:
        inner, outer = buffer_m(spec.geometry, -h), buffer_m(spec.geometry, h)
        shapely.prepare(inner)
    shapely.prepare(spec.geometry)
    return Fence(geofence_id, spec.tenant_id, spec.name, version, spec.geometry,
                 spec.dwell_seconds, h, inner, outer)


def geometry_json(geom) -> str:
    return json.dumps(mapping(geom))


def fence_from_record(rec: dict, default_hysteresis_m: float = 0.0) -> Fence:
    """From a `Geofence` Avro record (already validated when it was written)."""
    spec = FenceSpec(shape(json.loads(rec["geometry"])), rec["name"], rec["tenant_id"],
                     rec.get("dwell_seconds"), rec.get("hysteresis_m"), dict(rec.get("properties") or {}))
    return build_fence(rec["geofence_id"], rec["version"], spec, default_hysteresis_m)
