"""Streaming statistics for the anomaly kinds, and the distance between two positions. Pure.

Welford's algorithm keeps count, mean and the sum of squared deviations (M2) in three
numbers, updated one value at a time without the catastrophic cancellation of the naive
sum-of-squares, so a geofence's whole history fits in a changelog record."""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


def welford_add(s: list, x: float) -> None:
    """s = [n, mean, m2], updated in place with x."""
    s[0] += 1
    delta = x - s[1]
    s[1] += delta / s[0]
    s[2] += delta * (x - s[1])


def welford_std(s: list) -> float:
    return math.sqrt(s[2] / (s[0] - 1)) if s[0] > 1 else 0.0


def ewma_add(s: list, x: float, alpha: float) -> None:
    """s = [n, mean, variance], exponentially weighted (West 1979): recent windows count most,
    so a baseline follows a fence whose traffic grows or shrinks over weeks."""
    if s[0] == 0:
        s[:] = [1, float(x), 0.0]
        return
    delta = x - s[1]
    s[1] += alpha * delta
    s[2] = (1 - alpha) * (s[2] + alpha * delta * delta)
    s[0] += 1


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle (haversine) distance on a spherical Earth: within 0.5 % of the ellipsoid,
    plenty for "how fast must it have moved"."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))
