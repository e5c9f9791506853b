"""The evaluator's fence index, pinned where mutation testing found nothing holding it: what
upsert and remove return, that a removed fence is no longer found, and `zone_of`, the one-fence
question the hysteresis band is decided by."""

from shapely.geometry import Polygon

from streams.fence_index import FenceIndex, Zone
from streams.geofence import FenceSpec, build_fence

SQUARE = Polygon([(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)])


def fence(gid="g", tenant="t", hysteresis=None, geometry=SQUARE, version=1):
    return build_fence(gid, version, FenceSpec(geometry, gid, tenant, None, hysteresis))


def test_upsert_and_remove_return_the_version_they_replace_and_the_index_follows():
    idx = FenceIndex()
    assert len(idx) == 0 and idx.zones([0.5], [0.5]) == [{}]
    v1, v2 = fence(), fence(version=2)
    assert idx.upsert(v1) is None and idx.upsert(v2) is v1
    assert len(idx) == 1 and "t/g" in idx and "g" not in idx and idx.get("t/g") is v2 and idx.fences() == [v2]
    assert idx.zones([0.5], [0.5]) == [{"t/g": Zone.INSIDE}]
    assert idx.remove("t/x") is None  # unknown: nothing to remove, and the tree is still right
    assert idx.zones([0.5], [0.5]) == [{"t/g": Zone.INSIDE}]
    assert idx.remove("t/g") is v2
    assert idx.zones([0.5], [0.5]) == [{}] and idx.get("t/g") is None


def test_a_point_list_of_length_zero_asks_nothing():
    idx = FenceIndex()
    idx.upsert(fence())
    assert idx.zones([], []) == []


def test_zone_of_one_fence_with_and_without_a_band():
    banded, plain = fence(hysteresis=1000), fence("p")
    idx = FenceIndex()
    # near the equator 0.0045 degrees is about 500 m, 0.045 about 5 km
    for lon, expected in ((0.5, Zone.INSIDE), (0.0045, Zone.BAND), (-0.0045, Zone.BAND), (-0.045, Zone.OUTSIDE)):
        assert idx.zone_of(banded, lon, 0.5) == expected
    assert [idx.zone_of(plain, lon, 0.5) for lon in (0.5, 0.0, -0.0045)] == [Zone.INSIDE, Zone.INSIDE, Zone.OUTSIDE]


def test_a_removed_fence_leaves_the_others_answering_without_it():
    idx = FenceIndex()
    idx.upsert(fence("g"))
    idx.upsert(fence("h"))
    assert idx.zones([0.5], [0.5]) == [{"t/g": Zone.INSIDE, "t/h": Zone.INSIDE}]
    idx.remove("t/g")
    assert idx.zones([0.5], [0.5]) == [{"t/h": Zone.INSIDE}]
