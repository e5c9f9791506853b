"""Loitering counts per geofence, de-duplicated by event id. Pure.

A DWELL event says an entity stayed inside a geofence past its dwell time. Each geofence's
count keeps the ids of its last `keep` DWELL events: at-least-once delivery repeats the
records read after the last committed offset (and a replayed upstream repeats ids exactly),
so an id seen again is a repeat, counted apart and not again. A repeat older than the last
`keep` DWELLs of its geofence would be counted twice; `keep` bounds the state per geofence.
"""

from __future__ import annotations

from geoflux.errors import ValidationError
from geoflux.keys import scoped

KEEP_IDS = 256


def empty(tenant_id: str, geofence_id: str) -> dict:
    return {"tenant_id": tenant_id, "geofence_id": geofence_id, "dwells": 0, "repeats": 0,
            "last_dwell_ms": 0, "last_entity": "", "recent_ids": []}


def check_key(key: str | None, event: dict) -> str:
    """The record's key must be the event's tenant/geofence: the count lives in the table
    partition of that key, so a mismatch would count it where no reader looks."""
    want = scoped(event["tenant_id"], event["geofence_id"])
    if key != want:
        raise ValidationError(f"key {key!r} is not the event's geofence {want!r}")
    return want


def apply(state: dict | None, event: dict, keep: int = KEEP_IDS) -> tuple[dict | None, bool]:
    """(new state, counted). ENTER and EXIT change nothing: (None, False), no write."""
    if event["event_type"] != "DWELL":
        return None, False
    state = dict(state) if state else empty(event["tenant_id"], event["geofence_id"])
    if event["event_id"] in state["recent_ids"]:
        state["repeats"] += 1
        return state, False
    state["dwells"] += 1
    state["last_dwell_ms"] = max(state["last_dwell_ms"], event["ts_ms"])
    state["last_entity"] = event["entity_id"]
    state["recent_ids"] = (state["recent_ids"] + [event["event_id"]])[-keep:]
    return state, True
