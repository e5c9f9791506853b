"""The gateway's pure protocol: cursors, filters with tenant confinement, the flow-control
window that marks a slow client, and the per-subscriber rate limit."""

import pytest

from geoflux.errors import ValidationError
from services.api.gateway_protocol import (FlowWindow, TokenBucket, decode_cursor, encode_cursor,
                                       parse_subscription)


def test_cursor_round_trip_and_bad_cursors():
    positions = {0: 15, 2: 0, 1: 7}
    assert encode_cursor(positions) == "v1:0=15,1=7,2=0"
    assert decode_cursor(encode_cursor(positions)) == positions
    assert decode_cursor("v1:") == {}
    for bad in (None, 5, "0=1", "v2:0=1", "v1:0=x", "v1:a=1", "v1:0=-1"):
        with pytest.raises(ValidationError):
            decode_cursor(bad)


def test_filters_match_every_given_field():
    sub = parse_subscription({"geofence_id": "g1", "event_type": "ENTER"}, None)
    ev = {"tenant_id": "a", "entity_id": "e", "geofence_id": "g1", "event_type": "ENTER"}
    assert sub.matches(ev) and not sub.matches({**ev, "event_type": "EXIT"})
    assert parse_subscription(None, None).matches(ev)  # an operator may take everything


def test_a_tenant_key_is_confined_to_its_tenant():
    sub = parse_subscription({}, "acme")
    assert sub.tenant_id == "acme"
    assert not sub.matches({"tenant_id": "globex", "geofence_id": "g"})
    assert parse_subscription({"tenant_id": "acme"}, "acme").tenant_id == "acme"
    with pytest.raises(PermissionError, match="globex"):
        parse_subscription({"tenant_id": "globex"}, "acme")
    for bad in ({"colour": "red"}, {"entity_id": ""}, ["x"]):
        with pytest.raises(ValidationError):
            parse_subscription(bad, "acme")


def test_window_marks_a_client_slow_only_after_it_stays_full():
    w = FlowWindow(size=2, stall_s=10)
    w.on_sent(0)
    assert w.open
    w.on_sent(1)
    assert not w.open and not w.stalled(10.9) and w.stalled(11)
    w.on_ack(1)
    assert w.open and not w.stalled(100)  # an ack re-opens the window and resets the clock
    with pytest.raises(ValidationError):
        w.on_ack(3)  # cannot acknowledge what was never sent


def test_token_bucket_limits_the_rate_after_the_burst():
    b = TokenBucket(rate=10, burst=3, now=0)
    assert [b.take(0) for _ in range(3)] == [0, 0, 0]
    assert b.take(0) == pytest.approx(0.1)
    assert b.take(0.1) == 0 and b.take(0.1) > 0
    assert b.take(100) == 0 and b.tokens == 2  # refills only up to the burst


def test_refusals_say_what_is_wrong():
    """A client reads these reasons in the gateway's error frame: each names its problem."""
    cases = [(lambda: decode_cursor(5), "cursor must be a string from this gateway (v1:...)"),
             (lambda: decode_cursor("v1:0=1,x=2"), "cursor part 'x=2' is not partition=offset"),
             (lambda: parse_subscription(["x"], None),
              "filter must be an object of tenant_id, entity_id, geofence_id, event_type"),
             (lambda: parse_subscription({"colour": 1}, None), "filter: unknown field(s) ['colour']"),
             (lambda: parse_subscription({"entity_id": ""}, None), "filter values must be non-empty strings"),
             (lambda: FlowWindow(2, 1).on_ack(1), "ack of message 1, but only 0 were sent")]
    for call, reason in cases:
        with pytest.raises(ValidationError) as refused:
            call()
        assert str(refused.value) == reason


def test_every_filter_field_is_kept():
    sub = parse_subscription({"tenant_id": "t", "entity_id": "e", "geofence_id": "g",
                              "event_type": "EXIT"}, None)
    assert (sub.tenant_id, sub.entity_id, sub.geofence_id, sub.event_type) == ("t", "e", "g", "EXIT")
    ev = {"tenant_id": "t", "entity_id": "e", "geofence_id": "g", "event_type": "EXIT"}
    assert sub.matches(ev)
    assert not sub.matches({**ev, "entity_id": "other"}) and not sub.matches({**ev, "geofence_id": "other"})


def test_a_window_with_room_never_stalls_and_the_last_sent_may_be_acknowledged():
    w = FlowWindow(size=3, stall_s=5)
    w.on_sent(0)
    w.on_sent(0)
    assert w.open and w.full_since is None and not w.stalled(1000)
    w.on_ack(2)  # every message sent so far
    assert w.acked == 2 and w.open


def test_the_wait_for_a_token_counts_the_part_already_refilled():
    b = TokenBucket(rate=2, burst=1, now=0)
    assert b.take(0) == 0
    # a quarter second later half a token is back: the other half takes another quarter second
    assert b.take(0.25) == pytest.approx(0.25)
