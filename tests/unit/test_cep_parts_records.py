"""The CEP engine's parts, pinned where mutation testing found nothing holding them: a pattern's
shape fingerprint (stored with every key's state: a change restarts every pattern at upgrade),
its fields and refusals, a key state's JSON with shared and unshared states, compact events'
coordinates, and the re-key's alignment frontier at its edges."""

import hashlib

import pytest

from geoflux.errors import ValidationError
from streams.cep.alignment import frontier, releasable, settled
from streams.cep.keystate import KeyState, compact_event, expand_event
from streams.cep.patterns import parse_pattern, pattern_alert_rule

STEPS = [{"event_type": "ENTER", "geofence_id": "A"}, {"event_type": "ENTER", "geofence_id": "B"}]
BODY = {"pattern_id": "p", "tenant_id": "t", "severity": "high", "kind": "sequence", "within_s": 60,
        "steps": STEPS}


def refusal(body, **kw) -> str:
    with pytest.raises(ValidationError) as e:
        parse_pattern(body, **kw)
    return str(e.value)


def test_the_shape_is_the_first_12_hex_of_the_sha256_of_what_decides_matches():
    p = parse_pattern(BODY)
    assert (p.kind, p.version, p.lateness_ms, p.overlap) == ("sequence", 1, 5000, "skip_past_last")
    assert p.shape == hashlib.sha256(repr(("sequence", p.params, 5000, "skip_past_last")).encode()).hexdigest()[:12]


def test_the_id_given_with_the_request_wins_and_is_what_the_body_carries():
    p = parse_pattern({**BODY, "pattern_id": "in-body", "alert": {"channels": ["ops"]}}, pattern_id="from-path")
    assert p.pattern_id == "from-path" and p.body["pattern_id"] == "from-path"
    rule = pattern_alert_rule(p)
    assert (rule.rule_id, rule.match, rule.title) == ("cep-from-path", {"pattern_id": ("from-path",)},
                                                     "{pattern_id} matched for {key}")
    no_id = {k: v for k, v in BODY.items() if k != "pattern_id"}
    assert parse_pattern({**no_id, "alert": {"channels": ["ops"]}}, pattern_id="x").body["pattern_id"] == "x"


def test_a_kind_without_overlap_always_skips_past_the_last():
    p = parse_pattern({**BODY, "kind": "aggregate", "window": {"type": "tumbling", "size_s": 60},
                       "overlap": "allow"})
    assert p.overlap == "skip_past_last"


def test_an_alert_block_takes_exactly_its_five_fields():
    alert = {"channels": ["ops"], "fallback_channel": "email", "title": "t", "body": "b", "dedup_window_s": 60}
    rule = pattern_alert_rule(parse_pattern({**BODY, "alert": alert}))
    assert (rule.fallback_channel, rule.title, rule.body, rule.dedup_window_s) == ("email", "t", "b", 60)


@pytest.mark.parametrize("body,reason", [
    (["p"], "a pattern must be a JSON object"),
    ({**BODY, "tenant_id": 7}, "tenant_id is required"),
    ({**BODY, "tenant_id": ""}, "tenant_id is required"),
    ({**BODY, "pattern_id": "a b"}, "pattern_id must be 1-120 characters of letters, digits, . _ : -"),
    ({**BODY, "severity": "loud"}, "severity must be one of critical, high, warning, info"),
    ({**BODY, "alert": ["ops"]}, "alert must be an object: {channels, fallback_channel, title, body}"),
    ({**BODY, "alert": {"channels": ["ops"], "colour": "red"}}, "alert: unknown field(s) ['colour']"),
])
def test_each_pattern_refusal_word_for_word(body, reason):
    assert refusal(body) == reason


def test_key_state_json_keeps_unshared_states_apart_and_shared_ones_shared():
    shared, own_a, own_b = [[1, 2, "ev1"]], [[3, 4, "ev2"]], [[5, 6, "ev3"]]
    ks = KeyState("t", "e1", 7, {0: [5, []]}, {"a": ["s1", own_a], "b": ["s1", own_b],
                                              "c": ["s2", shared], "d": ["s2", shared]})
    text = ks.to_json()
    back = KeyState.from_json("t", "e1", text)
    assert back.patterns == {"a": ["s1", own_a], "b": ["s1", own_b], "c": ["s2", shared], "d": ["s2", shared]}
    assert back.patterns["c"][1] is back.patterns["d"][1] and back.patterns["a"][1] is not back.patterns["b"][1]
    assert (back.max, back.buffers) == (7, {0: [5, []]})


def test_key_state_written_in_the_layout_before_groups_is_still_read():
    # a store or changelog written before the "g" layout: a restart keeps its partial matches
    old = ('{"m":7,"b":[[0,5,[]]],"p":{"a":["s1",[[3,4,"ev2"]]],"c":["s2",[[1,2,"ev1"]]],'
           '"d":["s2",null,"c"],"b":["s1",[[5,6,"ev3"]]]}}')
    back = KeyState.from_json("t", "e1", old)
    assert back.patterns == {"a": ["s1", [[3, 4, "ev2"]]], "b": ["s1", [[5, 6, "ev3"]]],
                             "c": ["s2", [[1, 2, "ev1"]]], "d": ["s2", [[1, 2, "ev1"]]]}
    assert back.patterns["c"][1] is back.patterns["d"][1] and back.patterns["a"][1] is not back.patterns["b"][1]
    assert (back.max, back.buffers) == (7, {0: [5, []]})
    assert '"g":' in back.to_json() and KeyState.from_json("t", "e1", back.to_json()).patterns == back.patterns


def test_a_key_is_empty_only_with_neither_patterns_nor_buffers():
    assert KeyState("t", "e").empty()
    assert not KeyState("t", "e", buffers={0: [None, []]}).empty()
    assert not KeyState("t", "e", patterns={"p": ["s", []]}).empty()


def test_a_compact_event_keeps_its_coordinates_and_takes_zero_for_missing_ones():
    ev = {"ts_ms": 1, "event_id": "e", "event_type": "EXIT", "geofence_id": "G", "entity_id": "x",
          "lon": 13.4, "lat": 52.5, "attributes": {"colour": "red", "size": "L"}}
    assert expand_event(compact_event(ev, frozenset({"colour"}))) == {**ev, "attributes": {"colour": "red"}}
    bare = {k: v for k, v in ev.items() if k not in ("lon", "lat", "attributes")}
    assert compact_event(bare, frozenset()) == [1, "e", 1, "G", "x", 0.0, 0.0]


def test_a_partition_with_unread_records_and_nothing_seen_holds_everything_back():
    # seen -1: below every event time, so nothing is written until it delivers
    assert frontier({0: 5000}, backlog={1}, held={0}, assigned={0, 1}, moved_at={0: 0.0}, now_s=10.0,
                    align_ms=100, max_stall_s=30) == 99
    # assigned, nothing delivered and never seen moving: it constrains as just moved
    assert frontier({0: 5000}, backlog=set(), held={0}, assigned={0, 1}, moved_at={0: 10.0}, now_s=10.0,
                    align_ms=100, max_stall_s=30) == 99


def test_a_record_exactly_at_the_frontier_is_written():
    rows = [(1, 0.0), (2, 0.0), (3, 0.0)]
    assert releasable(rows, 2, -1, 1.0) == 2 and releasable(rows, None, -1, 1.0) == 3
    assert releasable([(3, 0.0)], 2, -1, 1.0) == 0


def test_a_record_ahead_of_a_caught_up_partition_waits_the_settle_time_and_no_longer():
    # partition 1 shows nothing unread, and last delivered at 10,000: a burst's record at
    # 20,000 read from partition 0 at t=5.0 s may still have company on its way in partition 1
    assigned, seen = {0, 1}, {0: 20_000, 1: 10_000}
    upto = frontier(seen, backlog=set(), held={0}, assigned=assigned, moved_at={0: 5.0, 1: 0.0}, now_s=5.1,
                    align_ms=1000, max_stall_s=5)
    assert upto == 21_000  # the frontier alone would write it at once
    settled_ms = settled(seen, assigned, 1000)
    assert settled_ms == 11_000
    assert releasable([(20_000, 5.0)], upto, settled_ms, read_by=5.1 - 0.5) == 0
    assert releasable([(20_000, 5.0)], upto, settled_ms, read_by=5.5 - 0.5) == 1
    # a record every partition has reached goes at once, and the wait keeps the prefix
    assert releasable([(10_900, 5.0), (20_000, 5.0)], upto, settled_ms, read_by=4.6) == 1
    # a partition nothing was read from yet settles nothing
    assert settled({0: 20_000}, assigned, 1000) == 999
