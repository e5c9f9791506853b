"""Feeds one key's events, locations and timers to the patterns that listen. Pure.

Event time and lateness. Most kinds see events in event-time order: the key holds each event
back until its watermark (its newest event time minus the pattern's `lateness_s`) passes it,
so the kinds see events sorted even when they arrive out of order (the re-key interleaves an
entity's events from several geofence partitions). Events are held once per lateness value,
shared by the patterns with that lateness. An event older than the watermark is late: not
applied, and reported with the patterns it missed. A key that goes quiet is not stuck behind
its watermark: `on_tick` releases what it holds once the input clock is a lateness past it.
Aggregates, rate_outlier and speed order themselves (their windows take late events up to
their own watermark; speed reads locations, not geofence events).

Timers. `on_tick(now)` runs on the stage's input clock — the event time its slowest busy input
partition has reached, or the wall clock when every input is idle — so an absence fires on
time for a silent entity, and draining a backlog never fires a timer ahead of the events that
decide it. A timer that fires on the clock settles the event time below it: events older than
that are late from then on (an absence reported, or a window published as closed, is never
changed afterwards). `due(ks)` tells the stage when a key next needs a tick, so a tick visits
only the keys that are due.

Shared state (node sharing, as Rete networks and CEP engines share identical subexpressions).
Patterns of one tenant with the same shape that start at the same event at a key get one
state object: from then on they see the same events in the same order, so their states stay
equal, and each event is applied to it once; the outputs are copied for each pattern. A
pattern that starts later, or whose shape changes, gets its own state — exactly what it would
have had alone.
"""

from __future__ import annotations

from itertools import repeat
from operator import is_

from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState, compact_event, expand_event
from streams.cep.outputs import LATE
from streams.cep.patterns import Pattern

MAX_HELD = 1_000  # events held back per key and lateness; past it the oldest are released early


class Engine:
    def __init__(self, table: PatternTable) -> None:
        self.table = table

    # -- inputs --------------------------------------------------------------------------------
    def on_event(self, ks: KeyState, ev: dict) -> tuple[list, list[str]]:
        """Applies a geofence event; returns (outputs, ids of the patterns it was late for)."""
        self._prune(ks)
        route = self.table.route(ks.tenant, ev["event_type"], ev["geofence_id"])
        out: list = []
        late: list[str] = []
        if route.direct:
            out += self._offer(ks, ev, route.direct_offers, late)
        ts = ev["ts_ms"]
        row = None
        for lateness, (starters, continuers) in route.groups.items():
            buf = ks.buffers.get(lateness)
            wm = buf[0] if buf is not None else None if ks.max is None else ks.max - lateness
            if wm is not None and ts < wm:
                # late for every pattern it concerns: in time, it might have changed what matched
                late += [p.pattern_id for p in (*starters, *continuers)]
                continue
            # held even when only continuers listen and none has state yet: an earlier
            # starter may still arrive within the lateness (at release, only patterns with
            # state are fed continuing events)
            if buf is None:
                buf = ks.buffers[lateness] = [wm, []]
            row = row or compact_event(ev, self.table.attribute_keys(ks.tenant))
            held = buf[1]
            at = len(held)
            while at and held[at - 1][0] > ts:  # ties keep arrival order
                at -= 1
            held.insert(at, row)
        if ks.max is None or ts > ks.max:
            ks.max = ts
        for lateness, buf in ks.buffers.items():
            upto = ks.max - lateness
            if len(buf[1]) > MAX_HELD:
                upto = max(upto, buf[1][len(buf[1]) - MAX_HELD - 1][0])
            out += self._release(ks, lateness, buf, upto)
        return out, late

    def on_location(self, ks: KeyState, loc: dict) -> tuple[list, list[str]]:
        self._prune(ks)
        out: list = []
        late: list[str] = []
        out += self._offer(ks, loc, self.table.location_offers(ks.tenant), late, locations=True)
        return out, late

    def on_tick(self, ks: KeyState, now: int) -> list:
        """`now` is the stage's input clock (see the module docstring)."""
        self._prune(ks)
        out: list = []
        for lateness, buf in ks.buffers.items():
            settled = now - lateness
            if buf[1] and buf[1][0][0] <= settled:
                out += self._release(ks, lateness, buf, min(settled, ks.max))  # a quiet key's held events
        done: dict[int, list] = {}
        timed = self.table.timed(ks.tenant)
        for pid in sorted(timed & ks.patterns.keys()) if timed else ():
            _shape, st = ks.patterns[pid]
            p = self.table.get(ks.tenant, pid)
            got = done.get(id(st))
            if got is None:
                settled = self._settled(ks, p, now)
                due = p.impl.due(p, st)
                if due is None or due > (now if p.impl.timer == "clock" else settled):
                    continue
                got = done[id(st)] = p.impl.tick(p, st, now, settled, ks.subject)
                buf = ks.buffers.get(p.lateness_ms)
                if p.impl.timer == "event" and p.impl.ordered and buf is not None:
                    buf[0] = max(buf[0] if buf[0] is not None else settled, settled)
                mine = got
            else:
                mine = [o.for_pattern(p) for o in got]
            out += self._settle(ks, p, st, mine, [])
        return out

    def published(self, ks: KeyState) -> list:
        """What the key's patterns publish while open (aggregates' open windows)."""
        out: list = []
        done: dict[int, list] = {}
        publishing = self.table.publishing(ks.tenant)
        for pid in sorted(publishing & ks.patterns.keys()) if publishing else ():
            _shape, st = ks.patterns[pid]
            p = self.table.get(ks.tenant, pid)
            got = done.get(id(st))
            out += done.setdefault(id(st), p.impl.publish(p, st, ks.subject)) if got is None else [
                o.for_pattern(p) for o in got]
        return out

    def due(self, ks: KeyState) -> int | None:
        """The input-clock time at which this key next has timer work (None: never)."""
        times = [buf[1][0][0] + lateness for lateness, buf in ks.buffers.items() if buf[1]]
        seen: set[int] = set()
        timed = self.table.timed(ks.tenant)
        for pid in (timed & ks.patterns.keys()) if timed else ():
            _shape, st = ks.patterns[pid]
            if id(st) in seen:
                continue
            seen.add(id(st))
            p = self.table.get(ks.tenant, pid)
            if p is not None:
                d = p.impl.due(p, st)
                if d is not None:
                    times.append(d if p.impl.timer == "clock" else d + p.lateness_ms)
        return min(times) if times else None

    # -- internals -----------------------------------------------------------------------------
    def _settled(self, ks: KeyState, p: Pattern, now: int) -> int:
        """Event time below which nothing more can reach `p` at this key: the clock less the
        lateness, and (ordered kinds) before the first event still held for it."""
        settled = now - p.lateness_ms
        buf = ks.buffers.get(p.lateness_ms) if p.impl.ordered else None
        if buf and buf[1]:
            settled = min(settled, buf[1][0][0] - 1)
        return settled

    def _release(self, ks: KeyState, lateness: int, buf: list, upto: int) -> list:
        held, out, n = buf[1], [], 0
        while n < len(held) and held[n][0] <= upto:
            ev = expand_event(held[n])
            route = self.table.route(ks.tenant, ev["event_type"], ev["geofence_id"])
            offers = route.offers.get(lateness)
            if offers:
                out += self._offer(ks, ev, offers, [])
            n += 1
        if n:
            del held[:n]
        buf[0] = upto if buf[0] is None else max(buf[0], upto)
        return out

    @staticmethod
    def _offer(ks: KeyState, item: dict, offers, late: list, locations: bool = False) -> list:
        """Feeds an event (or a location) to the patterns in `offers` (runs of patterns alike
        in shape and `starts`: `PatternTable`'s Route): a starter gets state if it has none, a
        continuer only counts where it has state. Each distinct state object is fed once and
        its outputs copied to the patterns that share it (see shared state). A run whose
        patterns all share one state (or all have none yet) is fed once as a whole; anything
        else, one pattern at a time. The hot loop: written out, not factored."""
        out: list = []
        patterns, subject, done, fresh = ks.patterns, ks.subject, {}, None
        for shape, starts, run, ids in offers:
            if len(run) > 1:
                first = patterns.get(ids[0])
                st = None
                if first is None:
                    if starts and patterns.keys().isdisjoint(ids):
                        fresh = fresh if fresh is not None else {}
                        st = fresh.get(shape)
                        if st is None:
                            st = fresh[shape] = run[0].impl.initialize(run[0])
                        # one entry object for the run: the next event finds it shared in C
                        patterns.update(dict.fromkeys(ids, [shape, st]))
                elif first[0] == shape:
                    st = first[1]
                    if not all(map(is_, repeat(first), map(patterns.get, ids))):  # not one shared entry:
                        for q in run:  # equal entries (read from the changelog) still share
                            e = patterns.get(q.pattern_id)
                            if e is None or e[1] is not st or e[0] != shape:
                                st = None
                                break
                if st is not None:  # one state for the whole run
                    res = done.get(id(st))
                    if res is None:
                        p = run[0]
                        impl = p.impl
                        got = impl.on_location(p, st, item, subject) if locations else impl.feed(p, st, item, subject)
                        res = done[id(st)] = (got, impl.empty(st), bool(got) and LATE in got)
                        mine = got
                    else:
                        mine = [o.for_pattern(run[0]) for o in res[0] if o is not LATE] if res[0] else res[0]
                    got, gone, was_late = res
                    if got:
                        for i, q in enumerate(run):
                            if i:
                                mine = [o.for_pattern(q) for o in got if o is not LATE]
                            if was_late:
                                late.append(q.pattern_id)
                                mine = [o for o in mine if o is not LATE]
                            if mine:
                                out += mine
                    if gone:
                        for pid in ids:
                            del patterns[pid]
                    continue
            for p in run:
                entry = patterns.get(p.pattern_id)
                if entry is None or entry[0] != shape:
                    if not starts:
                        continue
                    fresh = fresh if fresh is not None else {}  # shape -> state created for this item
                    st = fresh.get(shape)
                    if st is None:
                        st = fresh[shape] = p.impl.initialize(p)
                    entry = patterns[p.pattern_id] = [shape, st]
                st = entry[1]
                res = done.get(id(st))
                if res is None:
                    impl = p.impl
                    got = impl.on_location(p, st, item, subject) if locations else impl.feed(p, st, item, subject)
                    res = done[id(st)] = (got, impl.empty(st), bool(got) and LATE in got)
                    mine = got
                elif res[0]:
                    mine = [o.for_pattern(p) for o in res[0] if o is not LATE]
                else:
                    mine = res[0]
                if res[2]:
                    late.append(p.pattern_id)
                    mine = [o for o in mine if o is not LATE]
                if mine:
                    out += mine
                if res[1]:
                    del patterns[p.pattern_id]
        return out

    @staticmethod
    def _settle(ks: KeyState, p: Pattern, st, got: list, late: list) -> list:
        if p.impl.empty(st):
            ks.patterns.pop(p.pattern_id, None)
        if LATE in got:
            late.append(p.pattern_id)
            return [o for o in got if o is not LATE]
        return got

    def _prune(self, ks: KeyState) -> None:
        """Once per pattern change: drop the state of deleted patterns and of patterns whose
        shape changed (the edit rule, `streams/cep/patterns.py`), and buffers no pattern uses."""
        if ks.checked is self.table:
            return
        ks.checked = self.table
        for pid, (shape, _st) in list(ks.patterns.items()):
            p = self.table.get(ks.tenant, pid)
            if p is None or p.shape != shape:
                del ks.patterns[pid]
        used = self.table.latenesses(ks.tenant)
        for lateness in [late for late in ks.buffers if late not in used]:
            del ks.buffers[lateness]
