"""The evaluator's spatial index over fence versions. Pure: no I/O.

Two levels, so fences can change while points are evaluated:
- the base, one STRtree over every fence's search geometry as of its last build, answers a
  whole batch of points at once (shapely 2's vectorised `query`);
- the fences edited since then sit in a small tree of their own, rebuilt when they change
  (cheap: a few percent of the fences), queried for the batch's points at once; the base's
  copies of the edited and removed fences are masked out of its answers.
The base is rebuilt when the edits since its build pass `REBUILD_FRACTION` of it (at least
`REBUILD_MIN`): rebuilding 100,000 fences on every batch with an edit is what made fence churn
expensive (benchmarks/fence_churn.py). Fences are keyed by their scoped id
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


REBUILD_MIN = 256
REBUILD_FRACTION = 0.05


class FenceIndex:
    def __init__(self) -> None:
        self._fences: dict[str, Fence] = {}
        self._tree: STRtree | None = None  # the base; None: build it on the next query
        self._order: list[Fence] = []
        self._keys: list[str] = []
        self._masked: set[str] = set()  # keys whose base entry is out of date (edited, removed)
        self._recent = _RecentEdits()

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
        self._edited(key, fence)
        return previous

    def remove(self, fence_id: str) -> Fence | None:
        previous = self._fences.pop(fence_id, None)
        if previous is not None:
            self._edited(fence_id, None)
        return previous

    def _edited(self, key: str, fence: Fence | None) -> None:
        if self._tree is None:
            return  # the next query builds the base from `_fences` anyway
        self._masked.add(key)
        self._recent.put(key, fence)
        if len(self._masked) > max(REBUILD_MIN, REBUILD_FRACTION * len(self._keys)):
            self._tree = None

    def _ensure_tree(self) -> None:
        if self._tree is None:
            self._keys = list(self._fences)
            self._order = [self._fences[k] for k in self._keys]
            self._tree = STRtree([f.search_geometry for f in self._order])
            self._masked = set()
            self._recent = _RecentEdits()

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
        masked = self._masked
        for p, f in zip(point_idx.tolist(), fence_idx.tolist()):
            key = self._keys[f]
            if key not in masked:
                result[p][key] = _zone(self._order[f], points[p])
        for p, key, fence in self._recent.hits(points):
            result[p][key] = _zone(fence, points[p])
        return result

    def zone_of(self, fence: Fence, lon: float, lat: float) -> Zone:
        pt = shapely.Point(lon, lat)
        if not shapely.intersects(fence.search_geometry, pt):
            return Zone.OUTSIDE
        if fence.inner is None or shapely.intersects(fence.inner, pt):
            return Zone.INSIDE
        return Zone.BAND


def _zone(fence: Fence, point) -> Zone:
    """The zone of a point already known to intersect the fence's search geometry."""
    if fence.inner is None or shapely.intersects(fence.inner, point):
        return Zone.INSIDE
    return Zone.BAND


class _RecentEdits:
    """The fences edited since the base was built, in a small STRtree of their own rebuilt when
    they change (at most once per batch; it holds a few percent of the fences). A removed fence
    is simply absent here (its base entry is masked). An `rtree` index taking single inserts was
    tried first: its bulk query cost more per batch than the whole base's (benchmarks/fence_churn.py)."""

    def __init__(self) -> None:
        self._fences: dict[str, Fence] = {}
        self._tree: STRtree | None = None
        self._keys: list[str] = []
        self._order: list[Fence] = []

    def put(self, key: str, fence: Fence | None) -> None:
        if fence is None:
            self._fences.pop(key, None)
        else:
            self._fences[key] = fence
        self._tree = None

    def hits(self, points) -> list[tuple[int, str, Fence]]:
        """(point index, key, fence) for every point inside an edited fence's search geometry."""
        if not self._fences:
            return []
        if self._tree is None:
            self._keys = list(self._fences)
            self._order = [self._fences[k] for k in self._keys]
            self._tree = STRtree([f.search_geometry for f in self._order])
        point_idx, fence_idx = self._tree.query(points, predicate="intersects")
        return [(p, self._keys[f], self._order[f]) for p, f in zip(point_idx.tolist(), fence_idx.tolist())]
