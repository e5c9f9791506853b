"""Conversions between Avro records on topics and the membership machine's values. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable

from geoflux.errors import PermanentError, ValidationError
from streams.entity_history import History, Seen, le_bytes, le_column
from streams.geofence import snap_to_range
from streams.membership import EntityState, Membership, Transition, Update

REPLY_ATTRIBUTE = "geoflux.reply_to"
# The partition of `geo.evaluations` the asking API process reads its answers from: one per
# process rather than the request id's hash, so a transaction's answers touch one partition,
# not all of them (each partition a transaction writes costs the broker a produce request, a
# verification and a commit marker).
REPLY_PARTITION_ATTRIBUTE = "geoflux.reply_partition"


def reply_partition(attributes: dict, partitions: int | None) -> int | None:
    """The answer's partition the update asks for, if it is one of the topic's `partitions`;
    None (the request id's hash decides) for anything else: absent, not a number, out of range
    or a topic whose partitions are not known yet."""
    raw = attributes.get(REPLY_PARTITION_ATTRIBUTE)
    if not partitions or not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        return None
    p = int(raw)
    return p if p < partitions else None


def update_from_record(rec: dict) -> Update:
    entity = rec.get("entity_id")
    if not entity:
        raise ValidationError("location update has no entity_id")
    lon, lat = rec["lon"], rec["lat"]
    if -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0:  # every update but a broken one (NaN fails)
        x, y = float(lon), float(lat)
    else:
        # the same tolerance as fence geometry: float noise past an edge is snapped onto it
        x = snap_to_range(lon, 180) if math.isfinite(lon) else None
        y = snap_to_range(lat, 90) if math.isfinite(lat) else None
        if x is None or y is None:
            raise ValidationError(f"position ({lon}, {lat}) out of range")
    return Update(entity, rec.get("tenant_id") or "default", x, y, int(rec["ts_ms"]))


def state_to_record(state: EntityState, chunked: bool = False) -> dict:
    """The entity's changelog record: `chunked` (once `state.history.split()` has given the
    chunks written beside it), the newest chunk and the list of the others; else the whole
    history."""
    # once per changed entity per transaction: tuples stand for Avro arrays as they are (the
    # writer only iterates them), and the newest point is read from the columns directly
    hist = state.history
    if not (chunked and hist.chunks):
        columns, chunks = hist.to_columns(), NOT_CHUNKED
    else:
        # an older reader, which knows no chunks, sees a history that starts at the newest
        # chunk, with older updates possibly dropped: it refuses what it cannot place
        start = hist.open_from()
        columns = hist.to_columns(start, None, hist.ts[start])
        chunks = {"chunks": le_bytes(hist.chunks), "known_from_ms": hist.known_from_ms}
    return {
        "entity_id": state.entity_id,
        "tenant_id": state.tenant_id,
        "memberships": [
            {"geofence_id": m.geofence_id, "geofence_version": m.geofence_version,
             "entered_ms": m.entered_ms, "dwell_due_ms": m.dwell_due_ms,
             "dwell_fired": m.dwell_fired}
            for m in state.memberships.values()],
        "history": ([{"ts_ms": hist.ts[-1], "lon": hist.lon[-1], "lat": hist.lat[-1],
                      "inside": hist.inside[-1]}] if len(hist.ts) else []),
        "history_columns": columns,
        "history_chunks": chunks,
        "attributes": state.attributes,
    }


NOT_CHUNKED = {"chunks": b"", "known_from_ms": None}


def chunk_record(state: EntityState, start: int, end: int) -> dict:
    """A changelog chunk of an entity's history: its points [start, end), in an EntityState
    record (the changelog's one schema) with nothing else set."""
    return {"entity_id": state.entity_id, "tenant_id": state.tenant_id, "memberships": (),
            "history": (), "history_columns": state.history.to_columns(start, end),
            "history_chunks": NOT_CHUNKED, "attributes": {}}


def chunk_name(key: str, chunk: int) -> str:
    """The changelog metadata name a chunk of `key`'s history travels under."""
    return f"h{chunk}/{key}"


ChunkReader = Callable[[int], dict | None]  # chunk id -> its decoded record, None if missing


def state_from_record(rec: dict, chunk: ChunkReader | None = None) -> EntityState:
    """The state a changelog record holds. A chunked record's older points are read with
    `chunk`; without it (for what the newest point and the memberships decide: index keys, the
    API's membership view) the history is its newest chunk only, and incomplete."""
    chunked = rec.get("history_chunks") or NOT_CHUNKED
    if chunked["chunks"] and chunk is not None:
        parts, ids = [], le_column("q", chunked["chunks"])
        for c in ids:
            part = chunk(c)
            if part is None:
                raise PermanentError(f"entity history chunk {c} missing: corrupt state")
            parts.append(History.from_columns(part["history_columns"]))
        parts.append(History.from_columns(rec["history_columns"]))
        history = History.joined(parts, chunked["known_from_ms"], ids)
    elif rec["history_columns"]["ts_ms"]:
        history = History.from_columns(rec["history_columns"])
    else:  # written before history_columns: what came before its points is unknown
        points = [Seen(s["ts_ms"], s["lon"], s["lat"], tuple(s["inside"])) for s in rec["history"]]
        history = History(points, points[0].ts_ms if points else None)
    return EntityState(
        rec["entity_id"], rec["tenant_id"],
        {m["geofence_id"]: Membership(m["geofence_id"], m["geofence_version"], m["entered_ms"],
                                      m["dwell_due_ms"], m["dwell_fired"])
         for m in rec["memberships"]},
        history, dict(rec.get("attributes") or {}))


def event_record(t: Transition, produced_ms: int | None, attributes: dict | None = None) -> dict:
    return {
        "event_id": t.event_id, "event_type": t.event_type, "entity_id": t.entity_id,
        "geofence_id": t.geofence_id, "geofence_version": t.geofence_version,
        "tenant_id": t.tenant_id, "lon": t.lon, "lat": t.lat, "ts_ms": t.ts_ms,
        "source": t.source, "reason": t.reason, "produced_ms": produced_ms,
        "attributes": attributes or {},
    }
