"""One key's CEP state (an entity's or a geofence's, tenant-scoped), and its compact JSON. Pure.

    {"m": newest event time,
     "b": [[lateness ms, watermark, held events], ...],   one buffer per lateness in use
     "g": [[shape, operator state, pattern id, ...], ...]}  only patterns with something in flight

A held event is a list, not a dict: [ts, event id, type (0 ENTER, 1 EXIT, 2 DWELL), geofence
id, entity id, lon, lat, attributes (only those a pattern filters on; omitted when none)].
Held events are kept once per lateness, not once per pattern, and a pattern with nothing in
flight has no entry at all: a changelog record carries only what can still change a match.
Patterns of one shape that started at the same event share one state object (they evolve
identically: `streams/cep/engine.py`); it is written once, followed by the ids of every
pattern that shares it. Until 2026-11-30 the layout was "p": {pattern id: [shape, state]},
a sharer written as [shape, null, the pattern id that holds it] (~30 bytes per sharer, 600 of
an entity's 800 with 20 identical patterns); that layout is still read, so a restart from a
store or changelog written before keeps every partial match.
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
        groups: dict[int, list] = {}  # id(state) -> [shape, state, pattern id, ...]
        for pid, entry in self.patterns.items():
            group = groups.get(id(entry[1]))
            if group is None:
                groups[id(entry[1])] = [entry[0], entry[1], pid]
            else:
                group.append(pid)
        return _ENCODER.encode({"m": self.max, "b": [[late, buf[0], buf[1]] for late, buf in self.buffers.items()],
                                "g": list(groups.values())})

    @classmethod
    def from_json(cls, tenant: str, subject: str, text: str) -> "KeyState":
        doc = json.loads(text)
        patterns = {}
        for group in doc.get("g", ()):
            # one entry object per group, as the engine makes them (it checks sharing by identity)
            patterns.update(dict.fromkeys(group[2:], [group[0], group[1]]))
        for pid, entry in doc.get("p", {}).items():  # the layout before "g" (see the module docstring)
            patterns[pid] = [entry[0], patterns[entry[2]][1]] if len(entry) == 3 else entry
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
