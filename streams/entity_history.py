"""An entity's recent updates, in event-time order: what places a late update. Pure: no I/O.

Kept as columns (two `array('d')`, one `array('q')` and a list of shared tuples), about 32 bytes
a point where a dataclass per point cost about 150: a fast reporter holds every update of the
allowed lateness here. Consecutive points inside the same fences share one tuple.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from dataclasses import dataclass
from itertools import groupby

from geoflux.errors import PermanentError


@dataclass(frozen=True, slots=True)
class Seen:
    """One kept update: where the entity was, and the fences it was a member of after it."""

    ts_ms: int
    lon: float
    lat: float
    inside: tuple[str, ...]


class History:
    __slots__ = ("ts", "lon", "lat", "inside", "known_from_ms")

    def __init__(self, points: list[Seen] | None = None, known_from_ms: int | None = None) -> None:
        points = points or []
        self.ts = array("q", (p.ts_ms for p in points))
        self.lon = array("d", (p.lon for p in points))
        self.lat = array("d", (p.lat for p in points))
        self.inside: list[tuple[str, ...]] = []
        for p in points:
            self.inside.append(self._shared(p.inside, len(self.inside) - 1))
        # None: nothing was ever dropped, the first point is the entity's first update. Else
        # updates older than this may have been dropped and cannot be placed.
        self.known_from_ms = known_from_ms

    def __len__(self) -> int:
        return len(self.ts)

    def __getitem__(self, i: int) -> Seen:
        return Seen(self.ts[i], self.lon[i], self.lat[i], self.inside[i])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, History) and self.ts == other.ts and self.lon == other.lon
                and self.lat == other.lat and self.inside == other.inside
                and self.known_from_ms == other.known_from_ms)

    def __repr__(self) -> str:
        return f"History({list(self)!r}, known_from_ms={self.known_from_ms})"

    @property
    def complete(self) -> bool:
        return self.known_from_ms is None

    def find(self, ts_ms: int) -> int:
        """Index of the first point at or after `ts_ms`."""
        return bisect.bisect_left(self.ts, ts_ms)

    def _shared(self, inside: tuple[str, ...], *neighbours: int) -> tuple[str, ...]:
        for j in neighbours:
            if 0 <= j < len(self.inside) and self.inside[j] == inside:
                return self.inside[j]
        return inside

    def insert(self, i: int, ts_ms: int, lon: float, lat: float, inside: tuple[str, ...]) -> None:
        self.ts.insert(i, ts_ms)
        self.lon.insert(i, lon)
        self.lat.insert(i, lat)
        self.inside.insert(i, self._shared(inside, i - 1, i))

    def append(self, ts_ms: int, lon: float, lat: float, inside: tuple[str, ...]) -> None:
        self.insert(len(self.ts), ts_ms, lon, lat, inside)

    def set_inside(self, i: int, inside: tuple[str, ...]) -> None:
        i = i % len(self.ts)
        self.inside[i] = self._shared(inside, i - 1, i + 1)

    def trim(self, lateness_ms: int, max_points: int) -> None:
        """Keeps every point within `lateness_ms` of the newest, and the newest one before that
        (the state an update at the window's start follows), at most `max_points` of them."""
        if not self.ts:
            return
        start = max(0, self.find(self.ts[-1] - lateness_ms) - 1)
        start = max(start, len(self.ts) - max(1, max_points))
        if start:
            for column in (self.ts, self.lon, self.lat, self.inside):
                del column[:start]
            self.known_from_ms = self.ts[0]

    # -- the changelog's columns (schemas/avro/EntityState.avsc, HistoryColumns) --------------
    # Each numeric column travels as one little-endian byte string: written with one copy,
    # where an Avro array costs a call per value (about 5 times more for a 60-point window).
    def to_columns(self) -> dict:
        runs, sets = [], []
        for key, group in groupby(self.inside):
            sets.append(key)  # a tuple: the Avro writer takes any sequence for an array
            runs.append(len(list(group)))
        return {"ts_ms": _le_bytes(self.ts), "lon": _le_bytes(self.lon), "lat": _le_bytes(self.lat),
                "inside_runs": runs, "inside_sets": sets, "known_from_ms": self.known_from_ms}

    @classmethod
    def from_columns(cls, rec: dict) -> History:
        h = cls(known_from_ms=rec["known_from_ms"])
        for column, data in ((h.ts, rec["ts_ms"]), (h.lon, rec["lon"]), (h.lat, rec["lat"])):
            if len(data) % column.itemsize:
                raise PermanentError("entity history column of a broken length: corrupt state")
            column.frombytes(data)
            if sys.byteorder == "big":
                column.byteswap()
        for n, inside in zip(rec["inside_runs"], rec["inside_sets"]):
            h.inside.extend([tuple(inside)] * n)
        if not len(h.ts) == len(h.lon) == len(h.lat) == len(h.inside):
            raise PermanentError("entity history columns of different lengths: corrupt state")
        return h


def _le_bytes(column: array) -> bytes:
    if sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()
