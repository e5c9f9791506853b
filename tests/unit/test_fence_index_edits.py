"""The fence index under churn: fences added, moved and removed between queries, across base
rebuilds, answer exactly what a fresh look at every fence answers."""

import random

import pytest
from shapely.geometry import box

import streams.fence_index as fi
from streams.fence_index import FenceIndex, Zone
from streams.geofence import FenceSpec, build_fence


def fence(gid: str, version: int, rng: random.Random, tenant: str = "t", band: bool = True):
    x, y = rng.uniform(0, 0.09), rng.uniform(0, 0.09)
    w, h = rng.uniform(0.002, 0.02), rng.uniform(0.002, 0.02)
    hysteresis = rng.choice([None, 20.0]) if band else None
    return build_fence(gid, version, FenceSpec(box(x, y, x + w, y + h), gid, tenant, hysteresis_m=hysteresis))


def brute_force(index: FenceIndex, lons, lats) -> list[dict[str, Zone]]:
    out = []
    for lon, lat in zip(lons, lats):
        zones = {}
        for f in index.fences():
            z = index.zone_of(f, lon, lat)
            if z != Zone.OUTSIDE:
                zones[f"{f.tenant_id}/{f.geofence_id}"] = z
        out.append(zones)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_churn_answers_what_a_full_look_answers(seed, monkeypatch):
    monkeypatch.setattr(fi, "REBUILD_MIN", 8)  # cross several rebuilds within the test
    rng = random.Random(seed)
    index, versions = FenceIndex(), {}
    for i in range(40):
        versions[f"f{i}"] = 1
        index.upsert(fence(f"f{i}", 1, rng))
    rebuilt = 0
    for _round in range(20):
        for _edit in range(rng.randint(0, 5)):
            gid = f"f{rng.randrange(60)}"
            if gid in versions and rng.random() < 0.3:
                assert index.remove(f"t/{gid}") is not None
                del versions[gid]
            else:
                versions[gid] = versions.get(gid, 0) + 1
                index.upsert(fence(gid, versions[gid], rng))
        lons = [rng.uniform(0, 0.11) for _ in range(40)]
        lats = [rng.uniform(0, 0.11) for _ in range(40)]
        before = index._tree
        assert index.zones(lons, lats) == brute_force(index, lons, lats)
        rebuilt += before is None
    assert rebuilt >= 2, "the rounds crossed base rebuilds"
    assert len(index) == len(versions)


def test_an_edit_is_seen_by_the_next_query_without_rebuilding_the_base():
    rng = random.Random(1)
    index = FenceIndex()
    for i in range(1000):
        index.upsert(fence(f"f{i}", 1, rng, band=False))
    index.zones([0.0], [0.0])
    base = index._tree
    moved = build_fence("f7", 2, FenceSpec(box(0.5, 0.5, 0.6, 0.6), "f7", "t"))
    index.upsert(moved)
    index.remove("t/f8")
    added = build_fence("new", 1, FenceSpec(box(0.7, 0.7, 0.8, 0.8), "new", "t"))
    index.upsert(added)
    old = index.get("t/f9")
    assert index.zones([0.55, 0.75], [0.55, 0.75]) == [{"t/f7": Zone.INSIDE}, {"t/new": Zone.INSIDE}]
    assert index._tree is base  # three edits, no rebuild
    x, y = old.geometry.centroid.x, old.geometry.centroid.y
    assert "t/f9" in index.zones([x], [y])[0]


def test_the_base_is_rebuilt_once_the_edits_pass_their_share():
    rng = random.Random(2)
    index = FenceIndex()
    for i in range(2000):
        index.upsert(fence(f"f{i}", 1, rng, band=False))
    index.zones([0.0], [0.0])
    base = index._tree
    limit = max(fi.REBUILD_MIN, fi.REBUILD_FRACTION * 2000)  # 256 edits
    for i in range(int(limit)):
        index.upsert(fence(f"f{i}", 2, rng, band=False))
    assert index._tree is base, "at the limit, still the same base"
    index.upsert(fence("f-last", 1, rng, band=False))
    assert index._tree is None, "one past it, rebuilt on the next query"
    index.zones([0.0], [0.0])
    assert index._tree is not None and not index._masked
