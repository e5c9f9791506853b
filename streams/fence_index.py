"""The evaluator's spatial index over fence versions. Pure: no I/O.

One STRtree over every fence's search geometry answers a whole batch of points at once
(shapely 2's vectorised `query`); the tree is rebuilt lazily after edits, at most once per
batch, so a burst of edits costs one rebuild. Fences are keyed by their scoped id
(`tenant/geofence_id`): two tenants may both have a fence `depot`.
"""

from __future__ import annotations

import enum

import numpy as np
import shapely
from shapely import STRtree

from geoflux.keys import scoped
from streams.geofence import Fence


class Zone(enum.IntEnum):
    """Where a point lies relative to a fence. BAND exists only for fences with hysteresis."""

    OUTSIDE = 0
    BAND = 1  # within hysteresis_m of the boundary: no transition either way
    INSIDE = 2


class FenceIndex:
    def __init__(self) -> None:
        self._fences: dict[str, Fence] = {}
        self._tree: STRtree | None = None
        self._order: list[Fence] = []
        self._keys: list[str] = []

    def __len__(self) -> int:
        return len(self._fences)

    def __contains__(self, fence_id: str) -> bool:
        return fence_id in self._fences

    def get(self, fence_id: str) -> Fence | None:
        return self._fences.get(fence_id)

    def fences(self) -> list[Fence]:
        return list(self._fences.values())

    def upsert(self, fence: Fence) -> Fence | None:
        key = scoped(fence.tenant_id, fence.geofence_id)
        previous = self._fences.get(key)
        self._fences[key] = fence
        self._tree = None
        return previous

    def remove(self, fence_id: str) -> Fence | None:
        previous = self._fences.pop(fence_id, None)
        if previous is not None:
            self._tree = None
        return previous

    def _ensure_tree(self) -> None:
        if self._tree is None:
            self._keys = list(self._fences)
            self._order = [self._fences[k] for k in self._keys]
            self._tree = STRtree([f.search_geometry for f in self._order])

    def zones(self, lons, lats) -> list[dict[str, Zone]]:
        """For each point, the fences (scoped ids) it is INSIDE or in the BAND of (OUTSIDE is
        omitted)."""
        n = len(lons)
        result: list[dict[str, Zone]] = [{} for _ in range(n)]
        if n == 0 or not self._fences:
            return result
        self._ensure_tree()
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        point_idx, fence_idx = self._tree.query(points, predicate="intersects")
        for p, f in zip(point_idx.tolist(), fence_idx.tolist()):
            fence, key = self._order[f], self._keys[f]
            if fence.inner is None or shapely.intersects(fence.inner, points[p]):
                result[p][key] = Zone.INSIDE
            else:
                result[p][key] = Zone.BAND
        return result

    def zone_of(self, fence: Fence, lon: float, lat: float) -> Zone:
        pt = shapely.Point(lon, lat)
        if not shapely.intersects(fence.search_geometry, pt):
            return Zone.OUTSIDE
        if fence.inner is None or shapely.intersects(fence.inner, pt):
            return Zone.INSIDE
        return Zone.BAND
