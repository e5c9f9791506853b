"""Natural Earth's 1:110m country outlines as GeoJSON, for tests of real-world geometry.

`countries-110m.topojson` is the TopoJSON that the console's map bundles (world-atlas 2.0.2,
derived from Natural Earth, which is in the public domain; see NATURAL-EARTH.md), written out
from console/dist/console.js. Decoded here in plain Python: quantized arcs, delta-encoded.
177 features with `properties.name`, and `id` (ISO 3166 numeric) on all but three.
"""

from __future__ import annotations

import json
from pathlib import Path

TOPOLOGY = Path(__file__).with_name("countries-110m.topojson")


def _arcs(topology: dict) -> list[list[list[float]]]:
    (kx, ky), (dx, dy) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for qx, qy in arc:
            x, y = x + qx, y + qy
            points.append([x * kx + dx, y * ky + dy])
        arcs.append(points)
    return arcs


def _ring(arcs: list, indexes: list[int]) -> list[list[float]]:
    points: list[list[float]] = []
    for i in indexes:
        arc = arcs[i] if i >= 0 else arcs[~i][::-1]  # a negative index is the arc reversed
        points.extend(arc if not points else arc[1:])  # arcs share their end points
    return points


def countries() -> dict:
    topology = json.loads(TOPOLOGY.read_text())
    arcs = _arcs(topology)
    features = []
    for g in topology["objects"]["countries"]["geometries"]:
        if g["type"] == "Polygon":
            coordinates = [_ring(arcs, r) for r in g["arcs"]]
        else:
            coordinates = [[_ring(arcs, r) for r in polygon] for polygon in g["arcs"]]
        feature = {"type": "Feature", "properties": dict(g.get("properties") or {}),
                   "geometry": {"type": g["type"], "coordinates": coordinates}}
        if "id" in g:
            feature["id"] = g["id"]
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}
