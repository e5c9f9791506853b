"""One key's CEP state (an entity's or a geofence's, tenant-scoped), and its compact JSON. Pure.

    {"m": newest event time,
     "b": [[lateness ms, watermark, held events], ...],   one buffer per lateness in use
     "p": {pattern id: [shape, operator state]}}          only patterns with something in flight

A held event is a list, not a dict: [ts, event id, type (0 ENTER, 1 EXIT, 2 DWELL), geofence
id, entity id, lon, lat, attributes (only those a pattern filters on; omitted when none)].
Held events are kept once per lateness, not once per pattern, and a pattern with nothing in
flight has no entry at all: a changelog record carries only what can still change a match.
Patterns of one shape that started at the same event share one state object (they evolve
identically: `streams/cep/engine.py`); it is written once, the others as [shape, null, the
pattern id that holds it].
"""

from __future__ import annotations

import json

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one, not one per call
TYPES = ("ENTER", "EXIT", "DWELL")
TYPE_CODE = {t: i for i, t in enumerate(TYPES)}
FORMAT = 2  # CepState.format: 1 was {pattern_id: {v, s}} (before kinds were classes)


class KeyState:
    __slots__ = ("tenant", "subject", "max", "buffers", "patterns", "checked")

    def __init__(self, tenant: str, subject: str, newest: int | None = None,
                 buffers: dict | None = None, patterns: dict | None = None) -> None:
        self.tenant, self.subject = tenant, subject  # subject: the entity or geofence id
        self.max = newest
        self.buffers: dict[int, list] = buffers or {}  # lateness -> [watermark | None, held]
        self.patterns: dict[str, list] = patterns or {}  # pattern id -> [shape, state]
        self.checked: object = None  # the pattern table this state was last pruned against

    def empty(self) -> bool:
        return not self.patterns and not self.buffers

    def to_json(self) -> str:
        holder: dict[int, str] = {}
        patterns = {}
        for pid, entry in self.patterns.items():
            first = holder.setdefault(id(entry[1]), pid)
            patterns[pid] = entry if first is pid else [entry[0], None, first]
        return _ENCODER.encode({"m": self.max, "b": [[late, buf[0], buf[1]] for late, buf in self.buffers.items()],
                                "p": patterns})

    @classmethod
    def from_json(cls, tenant: str, subject: str, text: str) -> "KeyState":
        doc = json.loads(text)
        patterns = doc.get("p", {})
        for pid, entry in patterns.items():
            if len(entry) == 3:  # shared: the holder was written (and read) before it
                patterns[pid] = [entry[0], patterns[entry[2]][1]]
        return cls(tenant, subject, doc.get("m"), {b[0]: [b[1], b[2]] for b in doc.get("b", ())}, patterns)


def compact_event(ev: dict, attribute_keys: frozenset[str]) -> list:
    row = [ev["ts_ms"], ev["event_id"], TYPE_CODE[ev["event_type"]], ev["geofence_id"], ev["entity_id"],
           ev.get("lon", 0.0), ev.get("lat", 0.0)]
    if attribute_keys:
        attrs = ev.get("attributes") or {}
        kept = {k: attrs[k] for k in attribute_keys if k in attrs}
        if kept:
            row.append(kept)
    return row


def expand_event(row: list) -> dict:
    return {"ts_ms": row[0], "event_id": row[1], "event_type": TYPES[row[2]], "geofence_id": row[3],
            "entity_id": row[4], "lon": row[5], "lat": row[6], "attributes": row[7] if len(row) > 7 else {}}
