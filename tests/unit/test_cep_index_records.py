"""The pattern index, pinned where mutation testing found nothing holding it: what it gathers
over several patterns of one tenant, what it answers for a tenant it has never seen, a pattern
that both starts and continues on one event, the route cache's bound, and the pattern set's
change count."""

import pytest

from streams.cep import index as index_module
from streams.cep.index import PatternSet, PatternTable
from streams.cep.patterns import parse_pattern


def pattern(pid, **body):
    return parse_pattern({"pattern_id": pid, "tenant_id": "t", "severity": "info", **body})


def join(pid, left_attrs, right_attrs, lateness_s=5):
    return pattern(pid, kind="join", within_s=60, lateness_s=lateness_s,
                   left={"event_type": "ENTER", "attributes": left_attrs},
                   right={"event_type": "ENTER", "attributes": right_attrs})


def test_what_a_tenants_patterns_need_is_gathered_over_all_of_them():
    s1, s2 = pattern("s1", kind="speed", max_speed_kmh=100), pattern("s2", kind="speed", max_speed_kmh=200)
    j1, j2 = join("j1", {"a": "1"}, {"b": "2"}, lateness_s=1), join("j2", {"c": "3"}, {}, lateness_s=2)
    table = PatternTable([s1, s2, j1, j2])
    assert table.locations("t") == (s1, s2)
    assert table.location_offers("t") == ((s1.shape, True, (s1,), ("s1",)), (s2.shape, True, (s2,), ("s2",)))  # two shapes: two runs
    assert table.latenesses("t") == frozenset({1000, 2000})
    assert table.attribute_keys("t") == frozenset({"a", "b", "c"})
    assert table.timed("t") == frozenset({"s1", "s2"})


def test_a_tenant_without_patterns_gets_empty_answers_not_none():
    table = PatternTable([pattern("w", kind="aggregate", window={"type": "tumbling", "size_s": 60})])
    assert table.publishing("t") == frozenset({"w"})
    for ask in (table.locations, table.timed, table.publishing, table.attribute_keys, table.latenesses):
        assert not ask("other") and ask("other") is not None
    assert table.location_offers("other") == ()


def test_a_pattern_that_starts_on_an_event_and_also_continues_on_it_is_a_starter():
    # expected: any ENTER, the trigger's fence included
    p = pattern("a", kind="absence", within_s=60, trigger={"event_type": "ENTER", "geofence_id": "G"},
                expected={"event_type": "ENTER"})
    route = PatternTable([p]).route("t", "ENTER", "G")
    assert route.groups == {5000: ((p,), ())} and route.offers == {5000: ((p.shape, True, (p,), ("a",)),)}
    elsewhere = PatternTable([p]).route("t", "ENTER", "H")
    assert elsewhere.groups == {5000: ((), (p,))} and elsewhere.offers == {5000: ((p.shape, False, (p,), ("a",)),)}


def test_runs_are_adjacent_patterns_alike_in_shape_and_starts_in_their_order():
    c = [pattern(f"c{i}", kind="count", within_s=60, at_least=2, event={"event_type": "EXIT"}) for i in range(3)]
    other = pattern("o", kind="count", within_s=61, at_least=2, event={"event_type": "EXIT"})
    pairs = [(c[0], True), (c[1], True), (other, True), (c[2], True), (c[2], False)]
    assert index_module.runs(pairs) == (
        (c[0].shape, True, (c[0], c[1]), ("c0", "c1")), (other.shape, True, (other,), ("o",)),
        (c[2].shape, True, (c[2],), ("c2",)), (c[2].shape, False, (c[2],), ("c2",)))
    assert index_module.runs([]) == ()


def test_the_route_cache_holds_at_most_max_cached_routes(monkeypatch):
    monkeypatch.setattr(index_module, "MAX_CACHED", 2)
    table = PatternTable([pattern("c", kind="count", within_s=60, at_least=2, event={"event_type": "ENTER"})])
    for gid in ("A", "B", "C"):
        table.route("t", "ENTER", gid)
    assert len(table._cache) == 1  # full at 2: the third cleared it and is the only one


def test_every_change_to_the_pattern_set_counts():
    s = PatternSet()
    s["a"] = 1
    s["b"] = 2
    assert (s.version, s["b"]) == (2, 2)
    assert s.pop("x", None) is None and s.version == 3
    with pytest.raises(KeyError):
        s.pop("x")
    s.update({"e": 5}, c=3)
    assert (s["c"], s.pop("e")) == (3, 5)
    assert s.setdefault("d", 4) == 4 and s["d"] == 4 and s.setdefault("a") == 1
    del s["d"]
    s.popitem()
    s.clear()
    assert s.version == 11 and s == {}
