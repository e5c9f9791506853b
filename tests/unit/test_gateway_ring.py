"""The gateway's per-partition ring: what it serves while it is trimmed in steps."""

from services.api.gateway import Ring


def test_a_ring_keeps_at_least_its_capacity_and_serves_exactly_what_it_holds():
    ring = Ring(start=1000, capacity=64)
    for n, offset in enumerate(range(1000, 3000, 2), start=1):  # gaps: offsets of a compacted log
        ring.append(offset, {"o": offset}, offset + 2)
        held = [o for o, _ in ring.items]
        assert held == list(range(1000, offset + 1, 2))[-len(held):]  # the newest, in order
        assert min(n, 64) <= len(held) <= 64 + 4
        assert ring.lo == held[0] if n > len(held) else ring.lo == 1000
        assert ring.hi == offset + 2
        assert [o for o, _ in ring.read(ring.lo, 1000)] == held
        assert [o for o, _ in ring.read(held[-1], 5)] == [held[-1]]
        assert ring.read(ring.hi, 5) == []
