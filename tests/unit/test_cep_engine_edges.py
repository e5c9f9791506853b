"""The CEP engine's edges, pinned where mutation testing found nothing holding them: the cap on
held events, ties in event time, outputs and late reports gathered from every lateness buffer
of one call, shared state under timers and publishing, and the event time a timer settles."""

from streams.cep.engine import MAX_HELD, Engine
from streams.cep.index import PatternTable
from streams.cep.keystate import KeyState
from streams.cep.outputs import Aggregate, Match
from streams.cep.patterns import parse_pattern


def ev(i, etype, gid, ts, entity="e1"):
    return {"event_id": f"ev{i}", "event_type": etype, "geofence_id": gid, "ts_ms": ts,
            "entity_id": entity, "lon": 0.0, "lat": 0.0, "attributes": {}}


def pattern(pid, **body):
    return parse_pattern({"pattern_id": pid, "tenant_id": "t", "severity": "info", **body})


def seq(pid, a="A", b="B", lateness_s=0, **kw):
    return pattern(pid, kind="sequence", within_s=60, lateness_s=lateness_s,
                   steps=[{"event_type": "ENTER", "geofence_id": a}, {"event_type": "ENTER", "geofence_id": b}], **kw)


def absence(pid, within_s=60, lateness_s=0, trigger="A", expected="B"):
    return pattern(pid, kind="absence", within_s=within_s, lateness_s=lateness_s,
                   trigger={"event_type": "ENTER", "geofence_id": trigger},
                   expected={"event_type": "ENTER", "geofence_id": expected})


def ids(out):
    return sorted((o.pattern.pattern_id, o.event_ids) for o in out)


def test_past_max_held_events_the_oldest_is_released_early_and_not_before():
    p = seq("p", lateness_s=3600)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "e1")
    for i in range(MAX_HELD):
        engine.on_event(ks, ev(i, "ENTER", "A", i))
    held = ks.buffers[p.lateness_ms][1]
    assert len(held) == MAX_HELD and "p" not in ks.patterns  # exactly the cap: all still held
    engine.on_event(ks, ev(MAX_HELD, "ENTER", "A", MAX_HELD))
    held = ks.buffers[p.lateness_ms][1]
    assert len(held) == MAX_HELD and held[0][0] == 1  # the oldest, ts 0, went to the pattern
    assert ks.buffers[p.lateness_ms][0] == 0 and "p" in ks.patterns


def test_events_with_the_same_time_keep_their_arrival_order():
    p = seq("p", lateness_s=5)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 1000))
    engine.on_event(ks, ev(2, "ENTER", "B", 1000))
    assert ids(engine.on_tick(ks, 10_000)) == [("p", ("ev1", "ev2"))]


def test_one_event_returns_what_every_lateness_buffer_released():
    slow, fast = seq("slow", lateness_s=1), seq("fast", a="C", b="D")
    engine, ks = Engine(PatternTable([slow, fast])), KeyState("t", "e1")
    for i, (gid, ts) in enumerate((("A", 0), ("B", 500), ("C", 600))):
        assert engine.on_event(ks, ev(i, "ENTER", gid, ts)) == ([], [])
    out, late = engine.on_event(ks, ev(3, "ENTER", "D", 1600))  # fast matches; slow's A, B come out
    assert ids(out) == [("fast", ("ev2", "ev3")), ("slow", ("ev0", "ev1"))] and late == []


def test_an_event_late_for_several_lateness_values_is_reported_for_each_and_held_for_the_others():
    a0, a1, a9 = seq("a0"), seq("a1", lateness_s=1), seq("a9", lateness_s=9)
    engine, ks = Engine(PatternTable([a0, a1, a9])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "B", 5000))
    out, late = engine.on_event(ks, ev(2, "ENTER", "A", 3000))  # behind 5 s and 4 s, not behind -4 s
    assert out == [] and sorted(late) == ["a0", "a1"]
    assert [r[1] for r in ks.buffers[a9.lateness_ms][1]] == ["ev2", "ev1"]


def test_a_continuer_without_state_does_not_stop_the_starters_after_it():
    ends_at_b, starts_at_b = seq("p1", a="A", b="B"), seq("p2", a="B", b="C")
    for order in ([ends_at_b, starts_at_b], [starts_at_b, ends_at_b]):
        engine, ks = Engine(PatternTable(order)), KeyState("t", "e1")
        engine.on_event(ks, ev(1, "ENTER", "B", 0))
        assert ids(engine.on_event(ks, ev(2, "ENTER", "C", 1))[0]) == [("p2", ("ev1", "ev2"))]


def test_shared_state_emptied_without_output_empties_every_pattern_sharing_it():
    engine, ks = Engine(PatternTable([absence("x1"), absence("x2")])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    assert ks.patterns["x1"][1] is ks.patterns["x2"][1]
    assert engine.on_event(ks, ev(2, "ENTER", "B", 10)) == ([], [])
    assert ks.patterns == {}


def test_a_timer_fires_for_every_pattern_sharing_its_state_and_for_the_next_due_after_one_not_due():
    patterns = [absence("a-not-due", within_s=600), absence("p1"), absence("p2"), absence("q", within_s=30)]
    engine, ks = Engine(PatternTable(patterns)), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    out = engine.on_tick(ks, 61_000)
    assert ids(out) == [("p1", ("ev1",)), ("p2", ("ev1",)), ("q", ("ev1",))]
    assert all(isinstance(m, Match) and m.detail == {"fired_by": "timer"} for m in out)
    assert set(ks.patterns) == {"a-not-due"}  # the fired ones hold nothing more


def test_a_tick_releases_what_every_lateness_buffer_of_a_quiet_key_holds():
    engine, ks = Engine(PatternTable([seq("s1", lateness_s=1), seq("s2", lateness_s=2)])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    engine.on_event(ks, ev(2, "ENTER", "B", 100))
    assert ids(engine.on_tick(ks, 10_000)) == [("s1", ("ev1", "ev2")), ("s2", ("ev1", "ev2"))]


def test_a_timer_that_fires_settles_event_time_below_it():
    p = absence("p", lateness_s=5)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    assert ids(engine.on_tick(ks, 70_000)) == [("p", ("ev1",))]
    assert ks.buffers[p.lateness_ms][0] == 65_000
    # the expected event, had it come in time, would have prevented the match: now it is late
    assert engine.on_event(ks, ev(2, "ENTER", "B", 30_000)) == ([], ["p"])


def test_a_firing_timer_never_moves_the_watermark_back():
    # the input clock (20 s) is behind this key's newest event (50 s), as when another partition lags
    engine, ks = Engine(PatternTable([absence("p", within_s=10), seq("q", a="C", b="D")])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    engine.on_event(ks, ev(2, "ENTER", "C", 50_000))
    assert ids(engine.on_tick(ks, 20_000)) == [("p", ("ev1",))]
    assert ks.buffers[0][0] == 50_000
    assert engine.on_event(ks, ev(3, "ENTER", "B", 30_000)) == ([], ["p"])


def test_a_timer_with_events_still_held_settles_just_below_the_first_of_them():
    p = absence("p", within_s=1, lateness_s=5)
    engine, ks = Engine(PatternTable([p])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    engine.on_event(ks, ev(2, "ENTER", "A", 5000))  # releases the first A; this one is held
    assert engine.on_tick(ks, 3000) == []  # nothing due below 3000 - 5000
    assert ids(engine.on_tick(ks, 9999)) == [("p", ("ev1",))]
    assert ks.buffers[p.lateness_ms][0] == 4999
    assert engine.on_event(ks, ev(3, "ENTER", "B", 4998)) == ([], ["p"])


def test_patterns_sharing_a_window_each_publish_it_and_one_without_state_here_publishes_nothing():
    def agg(pid, **kw):
        return pattern(pid, kind="aggregate", window={"type": "tumbling", "size_s": 60}, **kw)
    engine, ks = Engine(PatternTable([agg("w1"), agg("w2"), agg("w3", geofence_id="H")])), KeyState("t", "G")
    engine.on_event(ks, ev(1, "ENTER", "G", 10_000))
    out = engine.published(ks)
    assert sorted((o.pattern.pattern_id, o.geofence_id, o.window[3]) for o in out) == [
        ("w1", "G", 1), ("w2", "G", 1)]
    assert all(isinstance(o, Aggregate) and not o.closed for o in out)


def test_a_continuer_without_state_does_not_stop_the_continuers_after_it():
    idle, busy = seq("p1", a="A", b="B"), seq("p3", a="X", b="B")  # both continue on B; only p3 has state
    engine, ks = Engine(PatternTable([idle, busy])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "X", 0))
    assert ids(engine.on_event(ks, ev(2, "ENTER", "B", 1))[0]) == [("p3", ("ev1", "ev2"))]


def test_a_clock_timer_does_not_settle_event_time():
    # time_of_day fires on the clock; events from before its firing are still applied in order
    night = pattern("n", kind="time_of_day", geofence_id="G", from_hour=22, to_hour=6, lateness_s=5)
    engine, ks = Engine(PatternTable([night])), KeyState("t", "e1")
    day = 86_400_000 * 19_723  # 2024-01-01 00:00 UTC
    engine.on_event(ks, ev(1, "ENTER", "G", day + 21 * 3_600_000 + 30 * 60_000))
    assert ids(engine.on_tick(ks, day + 22 * 3_600_000 + 15 * 60_000)) == [("n", ("ev1",))]
    assert engine.on_event(ks, ev(2, "EXIT", "G", day + 21 * 3_600_000 + 45 * 60_000))[1] == []


def test_the_next_due_time_is_the_earliest_over_patterns_sharing_state_and_not():
    shared = [absence(f"s{i:02}", within_s=600) for i in range(12)]
    engine, ks = Engine(PatternTable([*shared, absence("q", within_s=30)])), KeyState("t", "e1")
    engine.on_event(ks, ev(1, "ENTER", "A", 0))
    assert len({id(ks.patterns[p.pattern_id][1]) for p in shared}) == 1
    assert engine.due(ks) == 30_000
