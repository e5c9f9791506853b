"""Replay's pure parts: request bodies, instants, reset options."""

import pytest

from connectors.offsets import group_name, parse_instant_ms, reset_target
from geoflux.errors import ConfigurationError, ValidationError
from geoflux.settings import KafkaSettings, ReplaySettings
from services.api.routes_replay import parse_request, wanted

NOW = 1_700_000_100_000


def test_instants():
    assert parse_instant_ms("from", 1_700_000_000_000) == 1_700_000_000_000
    assert parse_instant_ms("from", "1700000000000") == 1_700_000_000_000
    assert parse_instant_ms("from", "2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_instant_ms("from", "2023-11-14T22:13:20") == 1_700_000_000_000  # UTC
    for bad in ("soon", True, None, -5, [1]):
        with pytest.raises(ValidationError):
            parse_instant_ms("from", bad)


def test_time_request_defaults_and_exact_bounds():
    req = parse_request({"from": NOW - 1000}, ReplaySettings(), NOW)
    assert (req.from_ms, req.to_ms, req.margin_ms) == (NOW - 1000, NOW, 30_000)
    ev = {"tenant_id": "a", "ts_ms": NOW - 1000, "geofence_id": "g"}
    assert wanted(ev, req, None, "ts_ms") and not wanted({**ev, "ts_ms": NOW}, req, None, "ts_ms")
    assert not wanted(ev, req, "b", "ts_ms")


@pytest.mark.parametrize("body,words", [
    ({"from": NOW, "to": NOW}, "before"),
    ({"from_offsets": {"0": 1}, "to": NOW}, "goes with"),
    ({"from_offsets": {"0": 1}, "to_offsets": {"1": 3}}, "does not"),
    ({"from_offsets": {}}, "non-empty"),
    ({"from_offsets": {"0": -1}}, "offset"),
    ({"from_offsets": {"0": 1}, "margin_s": 3}, "time range only"),
])
def test_bad_requests(body, words):
    with pytest.raises(ValidationError, match=words):
        parse_request(body, ReplaySettings(), NOW)


def test_reset_options():
    s = KafkaSettings(topic_prefix="p.")
    assert group_name(s, "geoflux-cep-rekey") == group_name(s, "p.geoflux-cep-rekey") == "p.geoflux-cep-rekey"
    assert reset_target(s, [], to_earliest=True).earliest
    assert reset_target(s, ["geo.locations"], to_offsets=["1:5"]).offsets == {("p.geo.locations", 1): 5}
    assert reset_target(s, [], to_offsets=["geo.locations:2:7"]).offsets == {("p.geo.locations", 2): 7}
    for kw in ({}, {"to_earliest": True, "to_latest": True}):
        with pytest.raises(ConfigurationError, match="exactly one"):
            reset_target(s, [], **kw)
    with pytest.raises(ConfigurationError, match="unknown topic"):
        reset_target(s, [], to_offsets=["nope:1:2"])
