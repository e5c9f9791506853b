"""Secondary index keys over entity states, kept in each partition's store. Pure.

    t<due ms, 16 digits>\\0<key>        a pending DWELL timer, in due order (streams/state/timers.py)
    m<tenant/geofence id>\\0<key>        the entity is inside that fence (occupancy)
    g<tenant>\\0<cell x><cell y>\\0<key>  the grid cell of the entity's last position

A fence edit then touches only the entities it can concern — its members, and those last seen
in the cells its new shape covers — instead of every entity of the partition; a timer tick
reads the due timers in order instead of scanning every state.
"""

from __future__ import annotations

import math

from geoflux.keys import SEPARATOR
from streams.membership import EntityState
from streams.state.timers import SEP, timer_entry

CELL_DEG = 0.01  # about 1.1 km of latitude
_COLS, _ROWS = int(360 / CELL_DEG), int(180 / CELL_DEG)
MEMBERS, GRID = b"m", b"g"
_SCOPE = SEPARATOR.encode()


def cell(lon: float, lat: float) -> tuple[int, int]:
    x = min(_COLS - 1, max(0, math.floor((lon + 180.0) / CELL_DEG)))
    y = min(_ROWS - 1, max(0, math.floor((lat + 90.0) / CELL_DEG)))
    return x, y


def _cell_bytes(x: int, y: int) -> bytes:
    return b"%05d%05d" % (x, y)


def entity_index_keys(key: str, state: EntityState) -> list[bytes]:
    # once per changed entity per transaction: the newest point is read from the columns
    # without building a `Seen`
    k = SEP + key.encode()
    tenant = state.tenant_id.encode()
    out = []
    for m in state.memberships.values():
        out.append(MEMBERS + tenant + _SCOPE + m.geofence_id.encode() + k)
        if m.dwell_due_ms is not None and not m.dwell_fired:
            out.append(timer_entry(m.dwell_due_ms, key))
    hist = state.history
    if len(hist.ts):
        out.append(GRID + tenant + SEP + _cell_bytes(*cell(hist.lon[-1], hist.lat[-1])) + k)
    return out


def members_prefix(scoped_fence_id: str) -> bytes:
    return scoped_fence_id.encode() + SEP


def grid_columns(tenant_id: str, bounds: tuple[float, float, float, float]) -> list[tuple[bytes, bytes]]:
    """[start, stop) ranges of grid entries (without the leading `g`) covering a bounding box,
    one per column of cells."""
    minx, miny, maxx, maxy = bounds
    (x0, y0), (x1, y1) = cell(minx, miny), cell(maxx, maxy)
    head = tenant_id.encode() + SEP
    return [(head + _cell_bytes(x, y0), head + _cell_bytes(x, y1 + 1)) for x in range(x0, x1 + 1)]


def grid_key(index_key: bytes) -> str:
    """The state key of a grid entry (without its leading `g`)."""
    return index_key.split(SEP, 2)[2].decode()
