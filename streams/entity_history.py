"""An entity's recent updates, in event-time order: what places a late update. Pure: no I/O.

Kept as columns (two `array('d')`, one `array('q')` and a list of shared tuples), about 32 bytes
a point where a dataclass per point cost about 150: a fast reporter holds every update of the
allowed lateness here. Consecutive points inside the same fences share one tuple.

In the changelog the window travels in chunks: the points of each `CHUNK_MS` of event time but
the newest go out once, as records of their own, and again only when a late update changes
them; the entity's own record carries the newest chunk and the list of the others. So a
record per update grows with the points of one chunk, not of the whole window (at 2 updates a
second and 30 s of lateness, about 5 points instead of 60).
"""

from __future__ import annotations

import bisect
import sys
from array import array
from dataclasses import dataclass
from itertools import groupby
from typing import NamedTuple, Sequence

from geoflux.errors import PermanentError

CHUNK_MS = 5_000  # event time a changelog chunk spans; chunk ids are multiples of it


class Split(NamedTuple):
    """What a changelog write of a history needs besides its newest chunk: the chunks to
    (re)write as (chunk id, first point, end), and the chunks no point is in any more."""

    write: Sequence[tuple[int, int, int]]
    drop: Sequence[int]


NOTHING = Split((), ())


@dataclass(frozen=True, slots=True)
class Seen:
    """One kept update: where the entity was, and the fences it was a member of after it."""

    ts_ms: int
    lon: float
    lat: float
    inside: tuple[str, ...]


class History:
    __slots__ = ("ts", "lon", "lat", "inside", "known_from_ms", "chunks", "changed_from_ms",
                 "written_open")

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
        # The changelog's view: chunks written and still referred to, the oldest point changed
        # since (None: none), and the newest chunk as last written (None: none was, so every
        # point before the newest chunk still has to go out).
        self.chunks = array("q")
        self.changed_from_ms: int | None = None
        self.written_open: int | None = None

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

    def _changed(self, ts_ms: int) -> None:
        if self.changed_from_ms is None or ts_ms < self.changed_from_ms:
            self.changed_from_ms = ts_ms

    def insert(self, i: int, ts_ms: int, lon: float, lat: float, inside: tuple[str, ...]) -> None:
        self._changed(ts_ms)
        self.ts.insert(i, ts_ms)
        self.lon.insert(i, lon)
        self.lat.insert(i, lat)
        self.inside.insert(i, self._shared(inside, i - 1, i))

    def append(self, ts_ms: int, lon: float, lat: float, inside: tuple[str, ...]) -> None:
        self.insert(len(self.ts), ts_ms, lon, lat, inside)

    def set_inside(self, i: int, inside: tuple[str, ...]) -> None:
        i = i % len(self.ts)
        self._changed(self.ts[i])
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

    # -- the changelog's chunks ----------------------------------------------------------------
    def split(self) -> Split:
        """The chunks a changelog write has to carry, and the history marked as written.

        Before the chunk the newest chunk was when last written, every chunk went out then and
        only lost points to trimming since (a reader drops points before `known_from_ms`): it
        is written again only if a point in or after it changed. The chunk that was newest, and
        any after it, go out whole."""
        ts = self.ts
        if not ts:
            return NOTHING
        newest, first = ts[-1] // CHUNK_MS, ts[0] // CHUNK_MS
        low = first if self.written_open is None else self.written_open
        if self.changed_from_ms is not None:
            low = min(low, self.changed_from_ms // CHUNK_MS)
        self.changed_from_ms, self.written_open = None, newest
        chunks, drop = self.chunks, ()
        if chunks and chunks[0] < first:
            n = bisect.bisect_left(chunks, first)
            drop = chunks[:n].tolist()
            del chunks[:n]
        if low >= newest:  # an update in the newest chunk: the common case
            return Split((), drop) if drop else NOTHING
        open_from = self.open_from()
        write = []
        i = bisect.bisect_left(ts, low * CHUNK_MS, 0, open_from)
        while i < open_from:
            chunk = ts[i] // CHUNK_MS
            end = bisect.bisect_left(ts, (chunk + 1) * CHUNK_MS, i, open_from)
            write.append((chunk, i, end))
            i = end
        if write:
            self.chunks = array("q", sorted(set(chunks).union(c for c, _, _ in write)))
        return Split(write, drop)

    def open_from(self) -> int:
        """Where the newest chunk starts."""
        return bisect.bisect_left(self.ts, self.ts[-1] // CHUNK_MS * CHUNK_MS) if self.ts else 0

    @classmethod
    def joined(cls, parts: list[History], known_from_ms: int | None, chunks: array) -> History:
        """One history from its changelog chunks and newest chunk, oldest first, as written
        (`chunks` their ids): points a trim has dropped since a chunk was written are left out."""
        h = cls(known_from_ms=known_from_ms)
        for part in parts:
            start = 0 if known_from_ms is None else part.find(known_from_ms)
            for mine, theirs in ((h.ts, part.ts), (h.lon, part.lon), (h.lat, part.lat),
                                 (h.inside, part.inside)):
                mine.extend(theirs[start:])
        if any(a >= b for a, b in zip(h.ts, h.ts[1:])):
            raise PermanentError("entity history chunks out of order: corrupt state")
        h.chunks = chunks
        h.written_open = h.ts[-1] // CHUNK_MS if len(h.ts) else None
        return h

    # -- the changelog's columns (schemas/avro/EntityState.avsc, HistoryColumns) --------------
    # Each numeric column travels as one little-endian byte string: written with one copy,
    # where an Avro array costs a call per value (about 5 times more for a 60-point window).
    def to_columns(self, start: int = 0, end: int | None = None,
                   known_from_ms: int | None = None) -> dict:
        """Points [start, end) as columns; `known_from_ms` defaults to the history's own."""
        whole = start == 0 and end is None
        runs, sets = [], []
        for key, group in groupby(self.inside if whole else self.inside[start:end]):
            sets.append(key)  # a tuple: the Avro writer takes any sequence for an array
            runs.append(len(list(group)))
        cols = [c if whole else c[start:end] for c in (self.ts, self.lon, self.lat)]
        return {"ts_ms": le_bytes(cols[0]), "lon": le_bytes(cols[1]), "lat": le_bytes(cols[2]),
                "inside_runs": runs, "inside_sets": sets,
                "known_from_ms": self.known_from_ms if known_from_ms is None else known_from_ms}

    @classmethod
    def from_columns(cls, rec: dict) -> History:
        h = cls(known_from_ms=rec["known_from_ms"])
        h.ts, h.lon, h.lat = le_column("q", rec["ts_ms"]), le_column("d", rec["lon"]), le_column("d", rec["lat"])
        for n, inside in zip(rec["inside_runs"], rec["inside_sets"]):
            h.inside.extend([tuple(inside)] * n)
        if not len(h.ts) == len(h.lon) == len(h.lat) == len(h.inside):
            raise PermanentError("entity history columns of different lengths: corrupt state")
        return h


def le_column(typecode: str, data: bytes) -> array:
    """A column from its little-endian bytes (`le_bytes` backwards)."""
    column = array(typecode)
    if len(data) % column.itemsize:
        raise PermanentError("entity history column of a broken length: corrupt state")
    column.frombytes(data)
    if sys.byteorder == "big":
        column.byteswap()
    return column


def le_bytes(column: array) -> bytes:
    if sys.byteorder == "big":
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()
