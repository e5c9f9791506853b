"""The CEP engine around the kinds: the pattern index, tenant isolation, the edit rule,
windows that close on the clock and sessions that merge, the timer index, compact state."""

import json

import pytest

from streams.cep.engine import Engine
from streams.cep.index import PatternSet, PatternTable
from streams.cep.keystate import KeyState
from streams.cep.kinds import KINDS
from streams.cep.outputs import AggregateGone, Match
from streams.cep.patterns import parse_pattern
from streams.state.timers import TIMERS, due_keys, next_due, parse_timer, timer_entry


def ev(i, etype, gid, ts, entity="e1"):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity, "lon": 0.0, "lat": 0.0, "attributes": {}}


def pattern(pid="p", tenant="t", **body):
    return parse_pattern({"pattern_id": pid, "tenant_id": tenant, "severity": "info", **body})


def seq(pid="p", tenant="t", a="A", b="B", **kw):
    return pattern(pid, tenant, kind="sequence", within_s=60, lateness_s=0,
                   steps=[{"event_type": "ENTER", "geofence_id": a}, {"event_type": "ENTER", "geofence_id": b}], **kw)


def test_every_kind_is_one_class_in_the_registry():
    assert set(KINDS) == {"sequence", "absence", "track_gap", "count", "time_of_day", "comovement",
                          "aggregate", "join", "speed", "dwell_outlier", "rate_outlier"}
    for name, kind in KINDS.items():
        assert kind.name == name
        for method in ("parse", "initialize", "feed", "tick", "due", "result"):
            assert callable(getattr(kind, method))


def test_events_are_offered_only_to_the_patterns_that_listen():
    patterns = [seq(f"p{i}", a=f"A{i}", b=f"B{i}") for i in range(100)]
    table = PatternTable(patterns)
    route = table.route("t", "ENTER", "A7")
    assert [p.pattern_id for p in route.groups[0][0]] == ["p7"] and route.groups[0][1] == ()
    assert [p.pattern_id for p in table.route("t", "ENTER", "B7").groups[0][1]] == ["p7"]
    assert not table.route("t", "EXIT", "A7") and not table.route("t", "ENTER", "elsewhere")
    assert table.route("t", "ENTER", "A7") is route  # cached
    count_any = pattern("c", kind="count", within_s=60, at_least=2, event={"event_type": "EXIT"})
    table = PatternTable([*patterns, count_any])
    assert [p.pattern_id for p in table.route("t", "EXIT", "anything").groups[5000][0]] == ["c"]


def test_a_pattern_only_sees_its_own_tenants_events():
    mine, theirs = seq("same-id", "acme"), seq("same-id", "globex")
    engine = Engine(PatternTable([mine, theirs]))
    acme, globex = KeyState("acme", "truck-1"), KeyState("globex", "truck-1")
    out = engine.on_event(acme, ev(1, "ENTER", "A", 0))[0] + engine.on_event(acme, ev(2, "ENTER", "B", 1))[0]
    assert [(m.pattern.tenant_id, m.event_ids) for m in out] == [("acme", ("ev1", "ev2"))]
    assert engine.on_event(globex, ev(3, "ENTER", "B", 2))[0] == []  # acme's partial is not globex's
    assert not globex.patterns
    assert not PatternTable([mine]).route("globex", "ENTER", "A")


def test_severity_or_alert_edits_keep_partial_matches_and_match_ids():
    before = seq()
    after = parse_pattern({**before.body, "severity": "critical",
                           "alert": {"channels": ["ops"]}, "description": "now louder"}, version=2)
    assert after.shape == before.shape and after.version == 2
    ks = KeyState("t", "e1")
    assert Engine(PatternTable([before])).on_event(ks, ev(1, "ENTER", "A", 0))[0] == []
    out = Engine(PatternTable([after])).on_event(ks, ev(2, "ENTER", "B", 1))[0]
    assert [(m.event_ids, m.pattern.severity, m.record()["pattern_version"]) for m in out] == [
        (("ev1", "ev2"), "critical", 2)]
    unedited = Engine(PatternTable([before]))
    ks2 = KeyState("t", "e1")
    unedited.on_event(ks2, ev(1, "ENTER", "A", 0))
    assert unedited.on_event(ks2, ev(2, "ENTER", "B", 1))[0][0].match_id == out[0].match_id


@pytest.mark.parametrize("change", [
    {"within_s": 30}, {"lateness_s": 1}, {"overlap": "allow"},
    {"steps": [{"event_type": "ENTER", "geofence_id": "A"}, {"event_type": "EXIT", "geofence_id": "B"}]},
])
def test_edits_to_what_matches_restart_the_patterns_state(change):
    before = seq()
    after = parse_pattern({**before.body, **change}, version=2)
    assert after.shape != before.shape
    ks = KeyState("t", "e1")
    Engine(PatternTable([before])).on_event(ks, ev(1, "ENTER", "A", 0))
    assert ks.patterns["p"][1]  # a partial match in flight
    engine = Engine(PatternTable([after]))
    out = engine.on_event(ks, ev(2, "ENTER", "B", 1))[0] + engine.on_tick(ks, 10**12)
    assert out == [] and "p" not in ks.patterns


def test_a_deleted_patterns_state_is_dropped_and_the_key_empties():
    ks = KeyState("t", "e1")
    Engine(PatternTable([seq()])).on_event(ks, ev(1, "ENTER", "A", 0))
    assert not ks.empty()
    Engine(PatternTable([])).on_tick(ks, 10)
    assert ks.empty()


def test_a_default_written_out_does_not_change_the_shape():
    assert seq().shape == parse_pattern({**seq().body, "overlap": "skip_past_last"}).shape


# -- windows --------------------------------------------------------------------------------

def agg(window, **kw):
    return pattern("w", kind="aggregate", window=window, **kw)


def test_a_quiet_fences_window_closes_on_the_clock_and_later_events_for_it_are_late():
    p = agg({"type": "tumbling", "size_s": 60}, lateness_s=5)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "G")
    out, late = engine.on_event(ks, ev(1, "ENTER", "G", 10_000))
    assert out == [] and late == []
    assert [(o.window[3], o.closed) for o in engine.published(ks)] == [(1, False)]
    assert engine.due(ks) == 65_000  # the window's end plus the lateness, on the input clock
    assert engine.on_tick(ks, 64_999) == []
    closed = engine.on_tick(ks, 65_000)  # no event at G since: the clock closes it
    assert [(o.window[0], o.window[3], o.closed) for o in closed] == [(0, 1, True)]
    assert engine.due(ks) is None
    out, late = engine.on_event(ks, ev(2, "ENTER", "G", 59_000))  # it would have been in that window
    assert out == [] and late == ["w"]
    assert engine.on_event(ks, ev(3, "ENTER", "G", 61_000)) == ([], [])
    assert [(o.window[0], o.closed) for o in engine.published(ks)] == [(60_000, False)]


def test_sessions_bridged_by_a_later_event_merge_into_one():
    p = agg({"type": "session", "gap_s": 10}, lateness_s=30)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "G")
    for i, t in enumerate([0, 5_000, 30_000, 33_000]):  # two sessions: 0-5 s and 30-33 s
        engine.on_event(ks, ev(i, "ENTER", "G", t))
    assert sorted(w[0] for w in ks.patterns["w"][1]["w"]) == [0, 30_000]
    out, late = engine.on_event(ks, ev(9, "EXIT", "G", 18_000))  # 13 s from 5 s, 12 s to 30 s: its own
    assert late == [] and not any(isinstance(o, AggregateGone) for o in out)
    assert sorted(w[0] for w in ks.patterns["w"][1]["w"]) == [0, 18_000, 30_000]
    ks = KeyState("t", "G")
    for i, t in enumerate([0, 5_000, 22_000, 25_000]):  # 0-5 s and 22-25 s: 17 s apart
        engine.on_event(ks, ev(i, "ENTER", "G", t))
    assert sorted(w[0] for w in ks.patterns["w"][1]["w"]) == [0, 22_000]
    out, late = engine.on_event(ks, ev(9, "EXIT", "G", 14_000))  # within gap of both: bridges them
    gone = [o.start_ms for o in out if isinstance(o, AggregateGone)]
    merged = [o.window for o in engine.published(ks)]
    assert gone == [22_000] and [(w[0], w[2], w[3], w[4]) for w in merged] == [(0, 25_000, 4, 1)]
    assert [w[0] for w in ks.patterns["w"][1]["w"]] == [0] and late == []
    closed = engine.on_tick(ks, 25_000 + 10_000 + 30_000)
    assert [(o.window[0], o.window[1], o.window[3], o.closed) for o in closed] == [(0, 35_000, 4, True)]


def test_a_session_that_grows_backwards_moves_its_record():
    p = agg({"type": "session", "gap_s": 10}, lateness_s=30)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "G")
    engine.on_event(ks, ev(1, "ENTER", "G", 20_000))
    out, _ = engine.on_event(ks, ev(2, "ENTER", "G", 12_000))
    assert [o.start_ms for o in out if isinstance(o, AggregateGone)] == [20_000]
    assert [o.window[0] for o in engine.published(ks)] == [12_000]


# -- timers and state -----------------------------------------------------------------------

def test_timer_entries_sort_by_due_time_and_a_tick_reads_only_what_is_due():
    entries = sorted([timer_entry(100, "acme/a"), timer_entry(50, "acme/b"), timer_entry(9_000_000_000_000, "x/c"),
                      timer_entry(50, "acme/a")])  # one key may hold two timers
    assert all(e.startswith(TIMERS) for e in entries)
    assert parse_timer(entries[0]) == (50, "acme/a") and next_due(entries) == 50 and next_due([]) is None
    assert due_keys(entries, 49) == []
    assert due_keys(entries, 100) == ["acme/a", "acme/b"]  # each key once, earliest first
    assert due_keys(entries, 10**13, limit=1) == ["acme/a"]
    assert parse_timer(timer_entry(7, "t/key\x00with nul")) == (7, "t/key\x00with nul")


def test_key_state_round_trips_compactly_and_holds_each_event_once():
    patterns = [pattern(f"c{i}", kind="count", within_s=3600, at_least=3, event={"event_type": "EXIT"})
                for i in range(20)]
    patterns += [pattern(f"a{i}", kind="absence", within_s=300, trigger={"event_type": "ENTER", "geofence_id": f"g{i}"},
                         expected={"event_type": "EXIT"}) for i in range(20)]
    engine, ks = Engine(PatternTable(patterns)), KeyState("t", "e1")
    for i in range(10):
        engine.on_event(ks, dict(ev(i, "EXIT", f"fence-{i}", i * 50_000), event_id=f"{i:032x}"))
    text = ks.to_json()
    back = KeyState.from_json("t", "e1", text)
    assert back.to_json() == text and back.max == ks.max
    doc = json.loads(text)
    assert len(doc["b"]) == 1 and len(doc["b"][0][2]) == 1  # one buffer, one held event for 40 patterns
    # 20 identical count patterns that started together: one state, written once with their ids;
    # absences with nothing pending keep no state
    assert [g[2:] for g in doc["g"]] == [[f"c{i}" for i in range(20)]]
    assert len(text) < 1_000


def test_identical_patterns_share_state_and_match_exactly_as_they_would_alone():
    def count(pid):
        return pattern(pid, kind="count", within_s=100, at_least=2, lateness_s=0, event={"event_type": "EXIT"})

    events = [ev(i, "EXIT", "G" if i % 3 else "H", i * 10_000) for i in range(12)]
    alone = {}
    for pid in ("a", "b"):
        engine, ks = Engine(PatternTable([count(pid)])), KeyState("t", "e1")
        start = 0 if pid == "a" else 4  # b is created after the 4th event
        alone[pid] = [(m.event_ids, m.start_ms) for e in events[start:] for m in engine.on_event(ks, e)[0]]
    ks, together = KeyState("t", "e1"), {"a": [], "b": []}
    for i, e in enumerate(events):
        table = PatternTable([count("a")] + ([count("b")] if i >= 4 else []))
        if i == 4:  # a restart in between: shared state must survive the changelog
            ks = KeyState.from_json("t", "e1", ks.to_json())
        for m in Engine(table).on_event(ks, e)[0]:
            together[m.pattern.pattern_id].append((m.event_ids, m.start_ms))
    assert together == alone and alone["a"] != alone["b"]


@pytest.mark.parametrize("restart", ["none", "changelog", "old layout"])
def test_a_run_of_identical_patterns_is_fed_once_per_event_before_and_after_a_restart(restart, monkeypatch):
    """20 identical patterns that started together share one state and are fed once per event,
    also when their state was read back from the changelog (in either layout): sharing is what
    keeps 100 identical patterns from costing 100 times one."""
    pats = [pattern(f"c{i}", kind="count", within_s=100, at_least=3, lateness_s=0, event={"event_type": "EXIT"})
            for i in range(20)]
    engine, ks = Engine(PatternTable(pats)), KeyState("t", "e1")
    fed = []
    impl = type(pats[0].impl)
    real = impl.feed
    monkeypatch.setattr(impl, "feed", lambda self, *a: fed.append(1) or real(self, *a))
    assert engine.on_event(ks, ev(1, "EXIT", "G", 1_000))[0] == []
    if restart == "changelog":
        ks = KeyState.from_json("t", "e1", ks.to_json())
    elif restart == "old layout":  # each pattern its own [shape, state] list, equal but not one object
        doc = json.loads(ks.to_json())
        (group,) = doc.pop("g")
        doc["p"] = {group[2]: [group[0], group[1]], **{pid: [group[0], None, group[2]] for pid in group[3:]}}
        ks = KeyState.from_json("t", "e1", json.dumps(doc))
    assert engine.on_event(ks, ev(2, "EXIT", "G", 2_000))[0] == []
    matches = engine.on_event(ks, ev(3, "EXIT", "G", 3_000))[0]
    assert sorted(m.pattern.pattern_id for m in matches) == sorted(p.pattern_id for p in pats)
    assert len(fed) == 3


def test_matches_know_their_pattern_and_tenant():
    engine, ks = Engine(PatternTable([seq("p", "acme")])), KeyState("acme", "truck/1|x")
    engine.on_event(ks, ev(1, "ENTER", "A", 0, "truck/1|x"))
    (m,) = engine.on_event(ks, ev(2, "ENTER", "B", 1, "truck/1|x"))[0]
    assert isinstance(m, Match) and m.record()["tenant_id"] == "acme" and m.key == "truck/1|x"


def test_the_pattern_set_counts_every_kind_of_change():
    patterns, versions = PatternSet(), []
    for change in (lambda d: d.__setitem__("a", 1), lambda d: d.update(b=2), lambda d: d.setdefault("c", 3),
                   lambda d: d.pop("a"), lambda d: d.__delitem__("b"), lambda d: d.popitem(), lambda d: d.clear()):
        change(patterns)
        versions.append(patterns.version)
    assert versions == [1, 2, 3, 4, 5, 6, 7] and patterns == {}


@pytest.mark.parametrize("seed", range(6))
def test_runs_of_identical_patterns_fed_at_once_give_each_pattern_what_it_gets_alone(seed):
    # identical patterns in runs (fed once per run), some created later, events out of order and
    # late, restarts through the changelog in between: every pattern's outputs, late reports and
    # timer outputs are what it produces on its own
    import random

    rnd = random.Random(seed)
    bodies = {"count": dict(kind="count", within_s=60, at_least=2, lateness_s=2, event={"event_type": "EXIT"}),
              "allow": dict(kind="count", within_s=60, at_least=2, lateness_s=2, overlap="allow",
                            event={"event_type": "EXIT"}),
              "agg": dict(kind="aggregate", lateness_s=1, window={"type": "session", "gap_s": 20}),
              "abs": dict(kind="absence", within_s=30, trigger={"event_type": "ENTER", "geofence_id": "G"},
                          expected={"event_type": "EXIT"})}
    # created later: aggregates only (fed at arrival); an ordered kind created later is offered
    # what the key's buffer already held, which it would not see on its own
    pats = {f"{k}{i}": (k, rnd.choice([0, 0, 5, 12]) if k == "agg" else 0) for k in bodies for i in range(3)}
    events, ts = [], 0
    for i in range(40):
        ts += rnd.randrange(0, 9_000)
        events.append(ev(i, rnd.choice(["ENTER", "EXIT"]), rnd.choice("GH"), max(0, ts - rnd.randrange(0, 4_000))))

    def outputs(out):
        return [(type(o).__name__, getattr(o, "event_ids", None), getattr(o, "window", None),
                 getattr(o, "closed", None), getattr(o, "start_ms", None)) for o in out]

    def play(pids):
        got, ks = {pid: [] for pid in pids}, KeyState("t", "G")
        for i, e in enumerate(events):
            live = [pattern(pid, **bodies[pats[pid][0]]) for pid in pids if pats[pid][1] <= i]
            engine = Engine(PatternTable(live))
            if i % 7 == 3:
                ks = KeyState.from_json("t", "G", ks.to_json())
            out, late = engine.on_event(ks, e)
            out += engine.on_tick(ks, e["ts_ms"] - 3_000)
            for pid in pids:
                mine = [o for o in out if o.pattern.pattern_id == pid]
                got[pid].append((outputs(mine), pid in late))
        return got

    together = play(list(pats))
    for pid in pats:
        assert together[pid] == play([pid])[pid], pid
