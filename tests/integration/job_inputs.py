"""Job inputs of an exact size (compact JSON, as the API measures them), for the large-input
and limit tests."""

from __future__ import annotations

import json

POINT = "[10.1234567890123,40.1234567890123]"  # 15 significant digits: printed back as written


def compact_size(inputs: dict) -> int:
    return len(json.dumps(inputs, separators=(",", ":")).encode())


def line_of_size(target: int) -> dict:
    """`{"geometry": LineString}` whose compact JSON is exactly `target` bytes; the points
    zigzag so the line has a length."""
    frame = compact_size({"geometry": {"type": "LineString", "coordinates": []}})
    per = len(POINT) + 1  # the point and its comma; every point below prints as wide as POINT
    n = (target - frame + 1) // per
    short = target - (frame + n * per - 1)
    assert 0 <= short < n, short
    # the extra bytes: `short` points one digit wider (1x.… -> 1xx.…)
    coords = [[10.1234567890123 + (i % 2) + (100 if i < short else 0), 40.1234567890123 + (i % 3)]
              for i in range(n)]
    return {"geometry": {"type": "LineString", "coordinates": coords}}
