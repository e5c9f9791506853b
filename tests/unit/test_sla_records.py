"""Delivery SLA attainment, pinned at every edge mutation testing tried: the window's two ends,
the deadline of a delivery not made yet, a breach at exactly the minimum samples and exactly the
target, the percentiles' ranks, and each field of a row."""

import pytest

from geoflux.errors import ConfigurationError
from streams.alerting.sla import ALL_CHANNELS, Delivery, SlaTarget, attainment, parse_targets

TARGETS = {"high": SlaTarget(within_ms=10_000, target=0.5)}
NOW = 10_000_000


def test_targets_parse_to_milliseconds_and_admit_a_target_of_one():
    assert parse_targets({"high": {"within_s": 0.5, "target": 1}, "low": {"within_s": 60, "target": 0.9}}) == {
        "high": SlaTarget(500, 1.0), "low": SlaTarget(60_000, 0.9)}


@pytest.mark.parametrize("spec", [{"within_s": 0, "target": 0.9}, {"within_s": -1, "target": 0.9},
                                  {"within_s": "10", "target": 0.9}, {"within_s": 10, "target": 0},
                                  {"within_s": 10, "target": 1.01}, {"within_s": 10, "target": "1"},
                                  {"target": 0.9}])
def test_targets_outside_their_ranges_are_refused_with_the_rule(spec):
    with pytest.raises(ConfigurationError) as e:
        parse_targets({"high": spec})
    assert str(e.value) == "SLA target for high: needs within_s > 0 and 0 < target <= 1"


def test_the_window_holds_alerts_created_from_now_minus_window_to_now_inclusive():
    ds = [Delivery("high", "x", NOW - 60_000, NOW - 60_000 + 1),  # the window's first millisecond
          Delivery("high", "x", NOW - 60_001, NOW - 60_001 + 1),  # just before it
          Delivery("high", "x", NOW, NOW + 1),  # now
          Delivery("high", "x", NOW + 1, NOW + 2)]  # after now: a clock ahead, not counted
    [row] = attainment(ds, TARGETS, NOW, window_ms=60_000)
    assert row["alerts"] == 2


def test_an_undelivered_alert_is_missed_only_once_past_its_deadline():
    at_deadline = [Delivery("high", "x", NOW - 10_000, None)]
    [row] = attainment(at_deadline, TARGETS, NOW, 60_000)
    assert (row["decided"], row["missed"], row["attainment"], row["breached"]) == (0, 0, None, False)
    [row] = attainment(at_deadline, TARGETS, NOW + 1, 60_000)
    assert (row["decided"], row["missed"], row["attainment"]) == (1, 1, 0.0)
    assert row["breached"]  # one decided alert is enough unless told otherwise


def test_a_breach_needs_the_minimum_samples_and_attainment_below_the_target():
    met, missed = Delivery("high", "x", NOW - 20_000, NOW - 15_000), Delivery("high", "x", NOW - 20_000, None)
    [row] = attainment([met, missed], TARGETS, NOW, 60_000, min_samples=2)
    assert row["attainment"] == 0.5 and not row["breached"]  # exactly on target is met
    [row] = attainment([met, missed, missed], TARGETS, NOW, 60_000, min_samples=3)
    assert row["breached"]  # exactly the minimum samples
    [row] = attainment([met, missed, missed], TARGETS, NOW, 60_000, min_samples=4)
    assert not row["breached"]


def test_a_row_carries_every_field_and_rows_come_sorted():
    ds = [Delivery("high", "slack", NOW - 30_000, NOW - 30_000 + ms) for ms in range(1000, 11_000, 1000)]
    ds += [Delivery("high", ALL_CHANNELS, NOW - 30_000, None)]
    rows = attainment(ds, TARGETS, NOW, 60_000)
    assert rows[0] == {"severity": "high", "channel": "*", "within_s": 10.0, "target": 0.5, "alerts": 1,
                       "decided": 1, "met": 0, "missed": 1, "attainment": 0.0, "breached": True,
                       "p50_s": None, "p95_s": None, "p99_s": None}
    # ten latencies 1..10 s: the q-th percentile is the value at rank int(q * 10), the last at most
    assert rows[1] == {"severity": "high", "channel": "slack", "within_s": 10.0, "target": 0.5, "alerts": 10,
                       "decided": 10, "met": 10, "missed": 0, "attainment": 1.0, "breached": False,
                       "p50_s": 6.0, "p95_s": 10.0, "p99_s": 10.0}


def test_percentiles_of_a_hundred_latencies_are_their_ranks():
    ds = [Delivery("high", "x", NOW - 50_000, NOW - 50_000 + ms) for ms in range(1, 101)]
    [row] = attainment(ds, TARGETS, NOW, 60_000)
    assert (row["p50_s"], row["p95_s"], row["p99_s"]) == (0.051, 0.096, 0.1)
    ds = [Delivery("high", "x", NOW - 50_000, NOW - 50_000 + ms) for ms in range(1, 201)]
    [row] = attainment(ds, TARGETS, NOW, 60_000)
    assert row["p99_s"] == 0.199  # rank 198 of 200: not the slowest
