"""Geoprocessing processes: descriptions (OGC API - Processes), input validation, and the
in-process implementation on shapely + pyproj. Pure: no I/O.

Distances and areas are geodesic: buffers and simplification run in an azimuthal
equidistant projection centred on the geometry; areas and lengths use pyproj's Geod on the
WGS84 ellipsoid (the same model as PostGIS `geography`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import shapely
from pyproj import CRS, Geod, Transformer
from pyproj.exceptions import CRSError
from shapely.geometry import GeometryCollection, mapping, shape
from shapely.ops import unary_union

from geoflux.errors import ValidationError

GEOD = Geod(ellps="WGS84")
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class InputSpec:
    name: str
    kind: str  # geometry | features | number | integer | string
    description: str
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    #: a geometry's coordinates are in the CRS this other input names (an EPSG code; WGS84
    #: lon/lat when it is absent or 4326): only then are they held to the lon/lat range
    crs_input: str | None = None

    def describe(self) -> dict:
        schema: dict[str, Any] = {
            "geometry": {"$ref": "https://geojson.org/schema/Geometry.json"},
            "features": {"$ref": "https://geojson.org/schema/FeatureCollection.json"},
            "number": {"type": "number"}, "integer": {"type": "integer"},
            "string": {"type": "string"}}[self.kind]
        if self.minimum is not None:
            schema = {**schema, "minimum": self.minimum}
        if self.maximum is not None:
            schema = {**schema, "maximum": self.maximum}
        return {"title": self.name, "description": self.description, "schema": schema,
                "minOccurs": 1 if self.required else 0, "maxOccurs": 1}


@dataclass(frozen=True, slots=True)
class Process:
    id: str
    title: str
    description: str
    inputs: tuple[InputSpec, ...]
    outputs: dict[str, str]
    run: Callable[[dict, Progress], dict]
    default_timeout_s: float = 300.0
    keywords: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> dict:
        return {"id": self.id, "title": self.title, "description": self.description,
                "version": "1.0.0", "keywords": list(self.keywords),
                "jobControlOptions": ["sync-execute", "async-execute", "dismiss"],
                "outputTransmission": ["value"],
                "links": [{"href": f"/processes/{self.id}", "rel": "self",
                           "type": "application/json", "title": self.title}]}

    def describe(self) -> dict:
        return {**self.summary(),
                "inputs": {i.name: i.describe() for i in self.inputs},
                "outputs": {k: {"title": k, "description": v, "schema": {"type": "object"}}
                            for k, v in self.outputs.items()}}


# -- input parsing ------------------------------------------------------------------------------
def _geometry(value: Any, name: str, lonlat: bool = True):
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if isinstance(value, dict) and value.get("type") == "FeatureCollection":
        return unary_union([_geometry(f, name, lonlat) for f in value.get("features") or []])
    if not isinstance(value, dict) or "type" not in value:
        raise ValidationError(f"input {name}: expected a GeoJSON geometry, Feature or FeatureCollection")
    try:
        geom = shape(value)
    except (ValueError, TypeError, AttributeError, KeyError, shapely.errors.GEOSException) as exc:
        raise ValidationError(f"input {name}: not valid GeoJSON: {exc}") from None
    if geom.is_empty:
        raise ValidationError(f"input {name}: empty geometry")
    minx, miny, maxx, maxy = geom.bounds
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise ValidationError(f"input {name}: coordinates must be finite numbers")
    if lonlat and (minx < -180 or maxx > 180 or miny < -90 or maxy > 90):
        raise ValidationError(f"input {name}: coordinates outside WGS84 lon/lat range")
    if not geom.is_valid:
        raise ValidationError(f"input {name}: invalid geometry: {shapely.is_valid_reason(geom)}")
    return geom


def _features(value: Any, name: str) -> list[tuple[Any, dict]]:
    if not isinstance(value, dict) or value.get("type") != "FeatureCollection":
        raise ValidationError(f"input {name}: expected a GeoJSON FeatureCollection")
    out = []
    for i, f in enumerate(value.get("features") or []):
        out.append((_geometry(f, f"{name}.features[{i}]"), (f.get("properties") or {})))
    if not out:
        raise ValidationError(f"input {name}: no features")
    return out


def validate_inputs(process: Process, inputs: Any) -> dict:
    """Checks every input against its spec; returns parsed values (shapely for geometries).
    A number's minimum and maximum are inclusive; a geometry may reach the WGS84 edges (+-180,
    +-90) and not pass them; a Feature or FeatureCollection given for a geometry is its
    geometry (the union of the collection's)."""
    if not isinstance(inputs, dict):
        raise ValidationError("inputs must be a JSON object")
    known = {i.name for i in process.inputs}
    unknown = set(inputs) - known
    if unknown:
        raise ValidationError(f"unknown input(s) {sorted(unknown)} for process {process.id}")
    parsed: dict[str, Any] = {}
    for spec in process.inputs:
        if spec.name not in inputs or inputs[spec.name] is None:
            if spec.required:
                raise ValidationError(f"input {spec.name} is required")
            continue
        value = inputs[spec.name]
        if spec.kind == "geometry":
            crs = inputs.get(spec.crs_input) if spec.crs_input else None
            parsed[spec.name] = _geometry(value, spec.name, lonlat=crs in (None, 4326))
        elif spec.kind == "features":
            parsed[spec.name] = _features(value, spec.name)
        elif spec.kind in ("number", "integer"):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValidationError(f"input {spec.name} must be a number")
            if spec.kind == "integer" and int(value) != value:
                raise ValidationError(f"input {spec.name} must be an integer")
            if spec.minimum is not None and value < spec.minimum:
                raise ValidationError(f"input {spec.name} must be >= {spec.minimum}")
            if spec.maximum is not None and value > spec.maximum:
                raise ValidationError(f"input {spec.name} must be <= {spec.maximum}")
            parsed[spec.name] = value
        else:
            if not isinstance(value, str) or not value:
                raise ValidationError(f"input {spec.name} must be a non-empty string")
            parsed[spec.name] = value
    return parsed


def input_size(inputs: dict) -> int:
    """Vertices across all geometry inputs: what routes a job to a tier."""
    total = 0
    for v in inputs.values():
        if isinstance(v, list):
            total += sum(shapely.get_num_coordinates(g) for g, _ in v)
        elif isinstance(v, shapely.Geometry):
            total += shapely.get_num_coordinates(v)
    return int(total)


# -- implementations --------------------------------------------------------------------------
def _in_metres(geom, fn):
    """`fn` applied in an azimuthal equidistant projection centred on the geometry. Built as a
    PROJ pipeline: the same numbers as a CRS-to-CRS transformer, without its ~15 ms of CRS
    database lookups per job (most of a small buffer's cost)."""
    c = geom.centroid
    aeqd = Transformer.from_pipeline(
        "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=aeqd +lat_0={round(c.y, 5)} +lon_0={round(c.x, 5)} +ellps=WGS84")
    local = fn(shapely.transform(geom, aeqd.transform, include_z=None, interleaved=False))
    return shapely.transform(local, lambda x, y: aeqd.transform(x, y, direction="INVERSE"), interleaved=False)


def _out(geom) -> dict:
    return mapping(geom) if not geom.is_empty else mapping(GeometryCollection())


def run_buffer(p: dict, progress: Progress) -> dict:
    segs = int(p.get("segments", 8))
    return {"geometry": _out(_in_metres(p["geometry"], lambda g: g.buffer(p["distance_m"], quad_segs=segs)))}


def run_intersection(p: dict, progress: Progress) -> dict:
    return {"geometry": _out(p["geometry"].intersection(p["clip"]))}


def run_union(p: dict, progress: Progress) -> dict:
    by = p.get("by")
    groups: dict[str, list] = {}
    for geom, props in p["features"]:
        groups.setdefault(str(props.get(by)) if by else "all", []).append(geom)
    feats = []
    for i, (key, geoms) in enumerate(sorted(groups.items())):
        feats.append({"type": "Feature", "properties": {by or "group": key, "count": len(geoms)},
                      "geometry": _out(unary_union(geoms))})
        progress(int(100 * (i + 1) / len(groups)))
    return {"features": {"type": "FeatureCollection", "features": feats}}


def run_simplify(p: dict, progress: Progress) -> dict:
    tol = p["tolerance_m"]
    return {"geometry": _out(_in_metres(p["geometry"], lambda g: g.simplify(tol, preserve_topology=True)))}


def run_convex_hull(p: dict, progress: Progress) -> dict:
    return {"geometry": _out(p["geometry"].convex_hull)}


def run_area_length(p: dict, progress: Progress) -> dict:
    area, perimeter = GEOD.geometry_area_perimeter(p["geometry"])
    geom = p["geometry"]
    length = GEOD.geometry_length(geom) if geom.geom_type in ("LineString", "MultiLineString") else 0.0
    return {"area_m2": abs(area), "perimeter_m": perimeter if area else 0.0, "length_m": length}


def run_point_in_polygon(p: dict, progress: Progress) -> dict:
    id_prop = p.get("id_property", "id")
    polys = p["polygons"]
    tree = shapely.STRtree([g for g, _ in polys])
    pts = p["points"]
    pi, gi = tree.query([g for g, _ in pts], predicate="intersects")
    counts = {str(polys[i][1].get(id_prop, i)): 0 for i in range(len(polys))}
    joined = [[] for _ in pts]
    for a, b in zip(pi.tolist(), gi.tolist()):
        pid = str(polys[b][1].get(id_prop, b))
        counts[pid] += 1
        joined[a].append(pid)
    feats = [{"type": "Feature", "geometry": mapping(g), "properties": {**props, "within": joined[i]}}
             for i, (g, props) in enumerate(pts)]
    return {"counts": counts, "points": {"type": "FeatureCollection", "features": feats}}


def _crs(code: Any, name: str) -> CRS:
    try:
        return CRS.from_epsg(int(code))
    except (CRSError, ValueError, TypeError):
        raise ValidationError(f"input {name}: EPSG:{code} is not a known CRS") from None


def run_reproject(p: dict, progress: Progress) -> dict:
    src, dst = _crs(p.get("from_epsg", 4326), "from_epsg"), _crs(p["to_epsg"], "to_epsg")
    t = Transformer.from_crs(src, dst, always_xy=True)
    out = shapely.transform(p["geometry"], t.transform, include_z=None, interleaved=False)
    if not all(math.isfinite(v) for v in out.bounds):
        raise ValidationError(f"input geometry: outside the area EPSG:{src.to_epsg()} -> "
                              f"EPSG:{dst.to_epsg()} can transform")
    return {"geometry": mapping(out), "crs": f"EPSG:{dst.to_epsg()}"}


def run_sleep(p: dict, progress: Progress) -> dict:
    steps = max(1, int(p["seconds"] * 10))
    for i in range(steps):
        time.sleep(p["seconds"] / steps)  # the work this diagnostic process exists to do
        progress(int(100 * (i + 1) / steps))
    return {"slept_s": p["seconds"]}


G = InputSpec
PROCESSES: dict[str, Process] = {p.id: p for p in [
    Process("buffer", "Geodesic buffer", "Buffers a geometry by a distance in metres.",
            (G("geometry", "geometry", "input geometry (WGS84)"),
             G("distance_m", "number", "buffer distance in metres", minimum=-1e6, maximum=1e6),
             G("segments", "integer", "segments per quarter circle", False, 1, 64)),
            {"geometry": "buffered geometry"}, run_buffer, keywords=("vector", "buffer")),
    Process("intersection", "Clip / intersection", "Intersects a geometry with a clip geometry.",
            (G("geometry", "geometry", "input geometry"), G("clip", "geometry", "clip geometry")),
            {"geometry": "intersection"}, run_intersection, keywords=("vector", "clip")),
    Process("union", "Union / dissolve", "Unions features, optionally dissolving by an attribute.",
            (G("features", "features", "input features"),
             G("by", "string", "attribute to dissolve by", False)),
            {"features": "one feature per group"}, run_union, keywords=("vector", "dissolve")),
    Process("simplify", "Simplify", "Simplifies a geometry with a tolerance in metres (topology kept).",
            (G("geometry", "geometry", "input geometry"),
             G("tolerance_m", "number", "tolerance in metres", minimum=0, maximum=1e6)),
            {"geometry": "simplified geometry"}, run_simplify),
    Process("convex-hull", "Convex hull", "The convex hull of a geometry.",
            (G("geometry", "geometry", "input geometry"),), {"geometry": "hull"}, run_convex_hull),
    Process("area-length", "Geodesic area and length", "Area (m²), perimeter and length (m) on WGS84.",
            (G("geometry", "geometry", "input geometry"),),
            {"area_m2": "area", "perimeter_m": "perimeter", "length_m": "length"}, run_area_length),
    Process("point-in-polygon", "Point in polygon count and join",
            "Counts points per polygon and tags each point with the polygons it falls in.",
            (G("points", "features", "point features"), G("polygons", "features", "polygon features"),
             G("id_property", "string", "polygon id property (default id)", False)),
            {"counts": "points per polygon", "points": "points with `within`"}, run_point_in_polygon),
    Process("reproject", "Reproject", "Transforms a geometry between EPSG coordinate systems.",
            (G("geometry", "geometry", "input geometry, in from_epsg's coordinates",
               crs_input="from_epsg"),
             G("from_epsg", "integer", "source EPSG (default 4326)", False),
             G("to_epsg", "integer", "target EPSG")),
            {"geometry": "reprojected geometry", "crs": "target CRS"}, run_reproject),
    Process("sleep", "Diagnostics: hold a worker", "Holds a worker for N seconds reporting progress; "
            "for checking cancellation, timeouts and monitoring.",
            (G("seconds", "number", "how long", minimum=0, maximum=14400),),
            {"slept_s": "seconds held"}, run_sleep, keywords=("diagnostics",)),
]}


def canonical_inputs(inputs: Any) -> str:
    return json.dumps(inputs, sort_keys=True, separators=(",", ":"))
