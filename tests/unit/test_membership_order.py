"""Late updates against an independent in-order computation (hypothesis, seeded, bounded).

The oracle knows nothing of the machine: it sorts the accepted updates by time and applies each
to a set of fences, with zones worked out from the fences' longitude intervals (every position
used lies at least 1 km from any band edge, so both geometries agree: checked below).

What "equal" means, per (entity, fence), and why:
- the machine's events, in the order it emitted them (stream order), alternate ENTER / EXIT
  starting with ENTER, and there are as many as the oracle's; with alternation that makes the
  type sequences equal;
- its final membership is the oracle's;
- times: sorted, the machine's ENTER times (and EXIT times) are each the oracle's or later by at
  most the lateness. Equality of times cannot be asked for: a transition already emitted keeps
  its recorded time when a late update shows it happened earlier (a stream cannot take an event
  back), and a later update can only be that much later than the one that moves it.
- the oracle runs over the updates the machine accepted; each one it rejected must have been
  rejected with a class that goes to the DLQ (`late_excursion`, `history_exceeded` with a small
  cap, when the cap's worth of newer updates was kept), a `late_excursion` only where including
  it in order would have changed some fence's events.
Run against the machine before this test (8 points kept, an update older than them "applied"
with no events, excursions behind a later transition dropped, band updates not re-derived), it
fails: hypothesis shrinks to a first update arriving second (no ENTER), and, with first updates
kept first, to a late decisive update among band updates (ENTER+EXIT where in order the entity
stayed inside). test_original_defect_is_caught is the issue's own case.
"""

from __future__ import annotations

import functools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from streams.fence_index import FenceIndex, Zone
from streams.geofence import FenceSpec, build_fence
from streams.membership import ENTER, EXIT, EntityState, MembershipMachine, Update

LATENESS = 10_000
HYST_M = 2000.0
HYST_DEG = HYST_M / 111_320  # at latitude 0.5 a degree of longitude is 111.3 km within 0.01 %
# (lon_min, lon_max, hysteresis): A holds C, B overlaps A, B holds D; all span lat 0..1
FENCES = {"A": (0.0, 1.0, True), "B": (0.5, 2.0, False), "C": (0.2, 0.4, True),
          "D": (1.5, 1.7, False)}


def _positions() -> list[float]:
    out = {-1.0, 3.0}
    for lo, hi, hyst in FENCES.values():
        offsets = (-0.04, -0.009, 0.009, 0.04) if hyst else (-0.01, 0.01)  # 0.009 deg: in the band
        out |= {round(edge + d, 4) for edge in (lo, hi) for d in offsets}
    return sorted(out)


POSITIONS = _positions()
LAT = 0.5


def oracle_zone(name: str, lon: float) -> Zone:
    lo, hi, hyst = FENCES[name]
    h = HYST_DEG if hyst else 0.0
    if lo + h <= lon <= hi - h:
        return Zone.INSIDE
    if lon < lo - h or lon > hi + h:
        return Zone.OUTSIDE
    return Zone.BAND


def oracle(updates: list[tuple[int, float]]) -> tuple[dict[str, list[tuple[str, int]]], set[str]]:
    """In order: sort by time, then each update moves each fence's membership."""
    inside: set[str] = set()
    events: dict[str, list[tuple[str, int]]] = {g: [] for g in FENCES}
    for ts, lon in sorted(updates):
        for g in FENCES:
            z = oracle_zone(g, lon)
            if g in inside and z == Zone.OUTSIDE:
                inside.discard(g)
                events[g].append((EXIT, ts))
            elif g not in inside and z == Zone.INSIDE:
                inside.add(g)
                events[g].append((ENTER, ts))
    return events, inside


@functools.cache
def fence_index() -> FenceIndex:
    idx = FenceIndex()
    for name, (lo, hi, hyst) in FENCES.items():
        spec = FenceSpec(box(lo, 0, hi, 1), name, "t", None, HYST_M if hyst else None)
        idx.upsert(build_fence(name, 1, spec))
    return idx


def make_machine(max_points: int) -> MembershipMachine:
    return MembershipMachine(fence_index(), LATENESS, max_points=max_points)


@functools.cache
def zones_at(lon: float) -> dict[str, Zone]:
    return fence_index().zones([lon], [LAT])[0]


def run_machine(m: MembershipMachine, arrivals: list[tuple[int, float]]):
    state = EntityState("e", "t")
    emitted: dict[str, list[tuple[str, int]]] = {g: [] for g in FENCES}
    outcomes = []
    for ts, lon in arrivals:
        out = m.apply(state, Update("e", "t", lon, LAT, ts), zones_at(lon))
        outcomes.append(out)
        for t in out.transitions:
            emitted[t.geofence_id].append((t.event_type, t.ts_ms))
    return emitted, outcomes, state


@st.composite
def scenarios(draw):
    steps = draw(st.lists(st.tuples(st.integers(1, 4000), st.sampled_from(POSITIONS),
                                    st.integers(0, LATENESS)), min_size=1, max_size=24))
    ts, t = [], 0
    for gap, _, _ in steps:
        t += gap
        ts.append(t)
    # arriving at ts + delay keeps every update within the lateness of the newest before it
    order = sorted(range(len(steps)), key=lambda k: (ts[k] + steps[k][2], k))
    return [(ts[k], steps[k][1]) for k in order], draw(st.sampled_from([3, 6, 1000]))


def check(arrivals: list[tuple[int, float]], max_points: int, m_factory=make_machine) -> None:
    emitted, outcomes, state = run_machine(m_factory(max_points), arrivals)
    accepted, newest = [], None
    for (ts, lon), out in zip(arrivals, outcomes):
        assert out.kind in ("applied", "late_excursion", "history_exceeded"), (out, arrivals)
        if out.rejected:
            assert newest is not None and ts < newest, "only a late update may be rejected"
            assert out.reason
            if out.kind == "history_exceeded":  # the cap's worth of newer updates was kept
                assert sum(1 for t, _ in accepted if t > ts) >= max_points, (ts, arrivals)
                continue
            before, _ = oracle(accepted)
            with_it, _ = oracle(accepted + [(ts, lon)])
            assert any(len(before[g]) != len(with_it[g]) for g in FENCES), \
                f"rejected {out.kind} though it changes no fence's events: {(ts, lon)} in {arrivals}"
        else:
            accepted.append((ts, lon))
        newest = ts if newest is None else max(newest, ts)
    expected, final = oracle(accepted)
    for g in FENCES:
        got = emitted[g]
        kinds = [k for k, _ in got]
        assert kinds == [ENTER, EXIT] * (len(kinds) // 2) + [ENTER] * (len(kinds) % 2), \
            (g, got, arrivals)
        assert len(got) == len(expected[g]), (g, got, expected[g], arrivals)
        for kind in (ENTER, EXIT):
            mine = sorted(t for k, t in got if k == kind)
            theirs = sorted(t for k, t in expected[g] if k == kind)
            assert all(0 <= a - b <= LATENESS for a, b in zip(mine, theirs)), \
                (g, kind, mine, theirs, arrivals)
    assert set(state.memberships) == final, (state.memberships, final, arrivals)


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_late_updates_match_the_in_order_computation_or_are_dead_lettered(scenario):
    arrivals, max_points = scenario
    check(arrivals, max_points)


def test_oracle_zones_agree_with_the_index():
    m = make_machine(1000)
    got = m.index.zones(POSITIONS, [LAT] * len(POSITIONS))
    for lon, zones in zip(POSITIONS, got):
        for g in FENCES:
            assert zones.get(f"t/{g}", Zone.OUTSIDE) == oracle_zone(g, lon), (g, lon)
    assert {oracle_zone("A", x) for x in POSITIONS} == set(Zone)  # bands are exercised


def test_original_defect_is_caught():
    """The issue's case: a late update older than 8 kept points answered "applied" with no events.
    Inside A from ts 1000 every second; a report outside A at 10_500, 9.5 s late."""
    arrivals = [(0, -1.0)] + [(t, 0.6) for t in range(1000, 21_000, 1000)] + [(10_500, -1.0)]
    check(arrivals, 1000)
    _, outcomes, _ = run_machine(make_machine(1000), arrivals)
    assert outcomes[-1].kind == "applied"
    assert [(t.event_type, t.ts_ms) for t in outcomes[-1].transitions if t.geofence_id == "A"] == \
        [(EXIT, 10_500), (ENTER, 11_000)]
