"""Synthetic fences and trajectories, and the expected events computed independently of
geoflux's index and state machine (plain shapely, point by point)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from shapely.geometry import Point, box, mapping


@dataclass
class Scenario:
    fences: dict[str, object]  # id -> shapely geometry
    tracks: dict[str, list[tuple[float, float, int]]]  # entity -> [(lon, lat, ts_ms)]

    def features(self, tenant: str = "t") -> list[dict]:
        return [{"type": "Feature", "id": gid, "geometry": mapping(g),
                 "properties": {"name": gid, "tenant_id": tenant}}
                for gid, g in self.fences.items()]

    def expected(self) -> dict[tuple[str, str], list[tuple[str, int]]]:
        """(entity, fence) -> [(ENTER|EXIT, ts)] with boundary-inclusive containment."""
        out: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for entity, track in self.tracks.items():
            inside: set[str] = set()
            for lon, lat, ts in track:
                p = Point(lon, lat)
                now = {gid for gid, g in self.fences.items() if g.intersects(p)}
                for gid in sorted(inside - now):
                    out.setdefault((entity, gid), []).append(("EXIT", ts))
                for gid in sorted(now - inside):
                    out.setdefault((entity, gid), []).append(("ENTER", ts))
                inside = now
        return out


def make_scenario(n_fences: int, n_entities: int, steps: int, seed: int = 7,
                  t0_ms: int = 1_700_000_000_000, extent: float = 1.0) -> Scenario:
    rnd = random.Random(seed)
    fences = {}
    for i in range(n_fences):
        x, y = rnd.uniform(0, extent), rnd.uniform(0, extent)
        w, h = rnd.uniform(0.005, 0.04) * extent, rnd.uniform(0.005, 0.04) * extent
        fences[f"g{i:05d}"] = box(x, y, x + w, y + h)
    tracks = {}
    for e in range(n_entities):
        lon, lat = rnd.uniform(0, extent), rnd.uniform(0, extent)
        heading = rnd.uniform(-1, 1), rnd.uniform(-1, 1)
        track = []
        for s in range(steps):
            lon = min(max(lon + heading[0] * 0.004 * extent + rnd.gauss(0, 0.001), 0), extent)
            lat = min(max(lat + heading[1] * 0.004 * extent + rnd.gauss(0, 0.001), 0), extent)
            track.append((round(lon, 6), round(lat, 6), t0_ms + s * 1000 + e))
        tracks[f"v{e:04d}"] = track
    return Scenario(fences, tracks)
