"""CEP operators over geofence events: pure functions of (state, input) -> matches.

Each operator keeps its state in a plain dict (JSON-serialisable, so it can live in a
changelog) and has the shape `on_event(state, event)`, `on_location(state, ts)`,
`on_tick(state, clock_ms)`, each returning matches. Times are event time (ms). The stage drives
`on_tick` with its input clock: the event time its slowest busy input partition has reached,
or the wall clock when every input is idle — so an absence fires on time for a silent entity,
and draining a backlog never fires a timer ahead of the events that decide it. Bounded state: partial matches and windows are evicted as they expire, and at
most MAX_PARTIALS are kept per key and pattern.

Event time and lateness: `feed` sits in front of `on_event`. It holds each event back until
the key's watermark (its newest event time minus the pattern's allowed lateness) passes it, so
the operator sees events in event-time order even when they arrive out of order (the re-key
interleaves an entity's events from several geofence partitions). An event older than the
watermark is late: not applied, counted, and reported to the caller. A key that goes quiet is
not stuck behind its watermark: `on_tick` releases what it holds once the input clock is a
lateness past it. Aggregates order themselves (windows take late events up to lateness).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

from streams.cep.patterns import Pattern

MAX_PARTIALS = 100
MAX_HELD = 1_000  # events held back per key and pattern; past it the oldest are released early
_HELD_FIELDS = ("ts_ms", "event_id", "event_type", "geofence_id", "entity_id")


@dataclass(frozen=True, slots=True)
class Match:
    pattern: Pattern
    key: str
    event_ids: tuple[str, ...]
    start_ms: int
    end_ms: int
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def match_id(self) -> str:
        # the tenant is part of it: two tenants' patterns, keys and event ids may all be alike
        raw = "\x1f".join([self.pattern.tenant_id, self.pattern.pattern_id, str(self.pattern.version),
                           self.key, str(self.start_ms), *self.event_ids])
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def record(self, tenant_id: str) -> dict:
        return {"match_id": self.match_id, "pattern_id": self.pattern.pattern_id,
                "pattern_version": self.pattern.version, "tenant_id": tenant_id, "key": self.key,
                "severity": self.pattern.severity, "event_ids": list(self.event_ids),
                "start_ms": self.start_ms, "end_ms": self.end_ms,
                "detail": {"kind": self.pattern.kind, **self.detail}}


def _hour(ms: int) -> tuple[int, int]:
    dt = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return dt.hour, dt.toordinal()


def _in_hours(p: Pattern, hour: int) -> bool:
    if p.from_hour < p.to_hour:
        return p.from_hour <= hour < p.to_hour
    return hour >= p.from_hour or hour < p.to_hour  # a window across midnight


def on_event(p: Pattern, st: dict, ev: dict, key: str) -> list:
    """Matches (and, for aggregate patterns, window updates) caused by one event."""
    ts, eid = ev["ts_ms"], ev["event_id"]
    out: list = []
    if p.kind == "aggregate":
        return aggregate(p, st, ev)
    if p.kind == "sequence":
        partials = [x for x in st.get("partials", []) if ts - x["start"] <= p.within_ms]
        if any(n.matches(ev) for n in p.not_between):
            partials = []  # "and not X between": a started sequence is broken
        advanced = []
        for x in partials:
            if p.steps[x["next"]].matches(ev):
                x = {"start": x["start"], "next": x["next"] + 1, "ids": x["ids"] + [eid]}
                if x["next"] == len(p.steps):
                    out.append(Match(p, key, tuple(x["ids"]), x["start"], ts))
                    if p.overlap == "skip_past_last":
                        break  # the earliest match wins; every other partial is skipped past
                    continue
            advanced.append(x)
        if p.steps[0].matches(ev):
            advanced.append({"start": ts, "next": 1, "ids": [eid]})
        st["partials"] = [] if out and p.overlap == "skip_past_last" else advanced[-MAX_PARTIALS:]
    elif p.kind == "absence":
        trigger, expected = p.steps
        pending = st.get("pending", [])
        out += [Match(p, key, (x["id"],), x["start"], x["deadline"], {"proven_by": eid})
                for x in pending if x["deadline"] < ts]  # a later event proves the absence
        pending = [x for x in pending if x["deadline"] >= ts]
        if expected.matches(ev):
            pending = [x for x in pending if x["start"] > ts]
        if trigger.matches(ev) and (p.overlap == "allow" or not pending):
            pending.append({"start": ts, "deadline": ts + p.within_ms, "id": eid})
        st["pending"] = pending[-MAX_PARTIALS:]
    elif p.kind == "count":
        if p.steps[0].matches(ev):
            # windows live in their own namespace: a geofence may be called "max" or "held"
            sub = ev["geofence_id"] if p.per == "entity" else ""  # per entity and geofence
            windows = st.setdefault("by", {})
            window = [w for w in windows.get(sub, []) if ts - w[0] < p.within_ms] + [[ts, eid]]
            if len(window) >= p.at_least:
                detail = {"count": str(len(window)), "geofence_id": ev["geofence_id"]}
                out.append(Match(p, key if p.per == "geofence" else f"{key}|{sub}",
                                 tuple(w[1] for w in window), window[0][0], ts, detail))
                if p.overlap == "skip_past_last":
                    window = []
            if window:
                windows[sub] = window[-max(p.at_least, 1) * 4:]
            else:
                windows.pop(sub, None)
    elif p.kind == "time_of_day":
        if ev["geofence_id"] == p.geofence_id:
            if ev["event_type"] == "ENTER":
                st["inside"], st["entered"], st["enter_id"] = True, ts, eid
                hour, day = _hour(ts)
                if _in_hours(p, hour) and st.get("fired_day") != day:
                    st["fired_day"] = day
                    out.append(Match(p, key, (eid,), ts, ts, {"hour": str(hour)}))
            elif ev["event_type"] == "EXIT":
                st["inside"] = False
    elif p.kind == "comovement":
        if ev["event_type"] == "ENTER" and (p.geofence_id is None or ev["geofence_id"] == p.geofence_id):
            window = [w for w in st.get("enters", []) if ts - w[0] <= p.within_ms and w[1] != ev["entity_id"]]
            window.append([ts, ev["entity_id"], eid])
            if len({w[1] for w in window}) >= p.at_least:
                out.append(Match(p, key, tuple(w[2] for w in window), window[0][0], ts,
                                 {"entities": ",".join(sorted({w[1] for w in window}))}))
                if p.overlap == "skip_past_last":
                    window = []
            st["enters"] = window[-MAX_PARTIALS:]
    return out


def concerns(p: Pattern, ev: dict) -> bool:
    """Whether `ev` can change a match of `p` (beyond moving its key's event time on)."""
    if p.kind in ("sequence", "absence", "count"):
        return any(spec.matches(ev) for spec in (*p.steps, *p.not_between))
    if p.kind in ("time_of_day", "comovement", "aggregate"):
        return p.geofence_id is None or ev["geofence_id"] == p.geofence_id
    return False


def feed(p: Pattern, st: dict, ev: dict, key: str) -> tuple[list, bool]:
    """Applies `ev` in event-time order; returns (outputs, late). An event the pattern is not
    concerned with only moves the watermark on (releasing what it held) and is never late."""
    if p.kind == "aggregate":
        late_before = st.get("late", 0)
        out = aggregate(p, st, ev)
        return out, st.get("late", 0) > late_before
    ts = ev["ts_ms"]
    if not concerns(p, ev):
        if ts <= st.get("max", ts - 1):
            return [], False
        st["max"] = ts
        return _release(p, st, ts - p.lateness_ms, key), False
    if ts < st.get("wm", ts):
        st["late"] = st.get("late", 0) + 1
        return [], True
    held = st.setdefault("held", [])
    at = len(held)
    while at and held[at - 1]["ts_ms"] > ts:  # ties keep arrival order
        at -= 1
    held.insert(at, {f: ev[f] for f in _HELD_FIELDS})
    st["max"] = max(st.get("max", ts), ts)
    upto = st["max"] - p.lateness_ms
    if len(held) > MAX_HELD:
        upto = max(upto, held[len(held) - MAX_HELD - 1]["ts_ms"])
    return _release(p, st, upto, key), False


def _release(p: Pattern, st: dict, upto: int, key: str) -> list:
    held, out = st.get("held", []), []
    n = 0
    while n < len(held) and held[n]["ts_ms"] <= upto:
        out += on_event(p, st, held[n], key)
        n += 1
    if n:
        st["held"] = held[n:]
    st["wm"] = max(st.get("wm", upto), upto)
    return out


def on_location(p: Pattern, st: dict, ts: int) -> None:
    if p.kind == "track_gap":
        st["last"] = max(st.get("last", 0), ts)


def on_tick(p: Pattern, st: dict, now_ms: int, key: str) -> list[Match]:
    """`now_ms` is the stage's input clock (see the module docstring)."""
    out: list[Match] = []
    settled = now_ms - p.lateness_ms  # nothing older than this can still arrive in time
    if st.get("held") and st["held"][0]["ts_ms"] <= settled:
        out += _release(p, st, min(settled, st["max"]), key)  # a quiet key's held events
    if p.kind == "absence":
        # a held event decides the absences before it; the timer only those before everything held
        horizon = min([settled] + [h["ts_ms"] - 1 for h in st.get("held", [])])
        due = [x for x in st.get("pending", []) if x["deadline"] <= horizon]
        out += [Match(p, key, (x["id"],), x["start"], x["deadline"], {"fired_by": "timer"}) for x in due]
        st["pending"] = [x for x in st.get("pending", []) if x["deadline"] > horizon]
    elif p.kind == "track_gap":
        last = st.get("last")
        if last and now_ms - last >= p.within_ms and st.get("fired_for") != last:
            st["fired_for"] = last
            out.append(Match(p, key, (), last, last + p.within_ms,
                             {"silent_since_ms": str(last)}))
    elif p.kind == "time_of_day" and st.get("inside"):
        hour, day = _hour(now_ms)
        if _in_hours(p, hour) and st.get("fired_day") != day:
            st["fired_day"] = day
            out.append(Match(p, key, (st["enter_id"],), now_ms - now_ms % 3_600_000, now_ms,
                             {"hour": str(hour), "fired_by": "timer"}))
    return out


def needs_locations(p: Pattern) -> bool:
    return p.kind == "track_gap"


def needs_ticks(p: Pattern) -> bool:
    return p.kind in ("absence", "track_gap", "time_of_day") or (p.kind != "aggregate" and p.lateness_ms > 0)


@dataclass(frozen=True, slots=True)
class Aggregate:
    pattern: Pattern
    geofence_id: str
    window: dict

    def record(self, tenant_id: str) -> dict:
        w = self.window
        return {"pattern_id": self.pattern.pattern_id, "tenant_id": tenant_id,
                "geofence_id": self.geofence_id, "window": self.pattern.window,
                "start_ms": w["start"], "end_ms": w["end"], "entries": w["enter"],
                "exits": w["exit"], "dwells": w["dwell"], "occupancy_max": w["occ_max"],
                "occupancy_end": w["occ"], "closed": w.get("closed", False),
                "late_events": w.get("late", 0)}

    @property
    def key(self) -> str:
        # tenant/pattern|geofence|start: tenants may share pattern and geofence ids; pattern ids
        # and starts hold no `|`, so a `|` inside the geofence id cannot make two keys alike
        return f"{self.pattern.tenant_id}/{self.pattern.pattern_id}|{self.geofence_id}|{self.window['start']}"


def _window_starts(p: Pattern, ts: int, st: dict) -> list[int]:
    if p.window == "tumbling":
        return [ts - ts % p.size_ms]
    if p.window == "hopping":
        last = ts - ts % p.hop_ms
        return [s for s in range(last - p.size_ms + p.hop_ms, last + 1, p.hop_ms) if s <= ts < s + p.size_ms]
    for w in st.get("w", {}).values():  # session: join the session this event is within gap of
        if w["start"] - p.size_ms <= ts <= w["last"] + p.size_ms:
            return [w["start"]]
    return [ts]


def aggregate(p: Pattern, st: dict, ev: dict) -> list[Aggregate]:
    """Counts an event into its windows; returns the windows it changed and those it closed.
    Windows close on event time: once the fence's newest event is past end + lateness."""
    if p.geofence_id is not None and ev["geofence_id"] != p.geofence_id:
        return []
    ts, kind = ev["ts_ms"], ev["event_type"]
    st["max"] = max(st.get("max", 0), ts)
    windows = st.setdefault("w", {})
    if ts < st["max"] - p.lateness_ms:
        st["late"] = st.get("late", 0) + 1
        return []
    st["occ"] = max(0, st.get("occ", 0) + {"ENTER": 1, "EXIT": -1}.get(kind, 0))
    changed = []
    for start in _window_starts(p, ts, st):
        w = windows.setdefault(str(start), {"start": start, "end": start + p.size_ms, "last": ts,
                                            "enter": 0, "exit": 0, "dwell": 0, "occ_max": 0, "occ": 0})
        if p.window == "session":
            w["last"] = max(w["last"], ts)
            w["end"] = w["last"] + p.size_ms
        w[{"ENTER": "enter", "EXIT": "exit", "DWELL": "dwell"}[kind]] += 1
        w["occ"] = st["occ"]
        w["occ_max"] = max(w["occ_max"], st["occ"])
        changed.append(Aggregate(p, ev["geofence_id"], dict(w)))
    for key, w in list(windows.items()):
        if w["end"] + p.lateness_ms <= st["max"]:
            del windows[key]
            changed.append(Aggregate(p, ev["geofence_id"], dict(w, closed=True, late=st.get("late", 0))))
    return changed
