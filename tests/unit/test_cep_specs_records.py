"""What every CEP kind's parameters share, pinned where mutation testing found nothing holding
it: a number's open and closed ends and its default, the longest window, an event filter's
fields kept and its limits exactly at their value, and each refusal word for word."""

import pytest

from geoflux.errors import ValidationError
from streams.cep.specs import (MAX_FILTER_CHARS, MAX_WITHIN_S, EventSpec, event_spec, number, optional_geofence,
                               required_geofence, within_ms)


def refusal(fn, *args, **kw) -> str:
    with pytest.raises(ValidationError) as e:
        fn(*args, **kw)
    return str(e.value)


def test_a_number_is_open_or_closed_at_its_low_end_and_closed_at_its_high_end():
    assert number({}, "z", 0, 10, default=4) == 4.0
    assert number({"z": 10}, "z", 0, 10) == 10.0
    assert refusal(number, {"z": 0}, "z", 0, 10) == "z must be a number in (0, 10]"
    assert number({"z": 0}, "z", 0, 10, lo_open=False) == 0.0
    assert refusal(number, {"z": -1}, "z", 0, 10, lo_open=False) == "z must be a number in [0, 10]"
    assert refusal(number, {"z": True}, "z", 0, 10) == "z must be a number in (0, 10]"
    assert refusal(number, {}, "z", 0, 10) == "z must be a number in (0, 10]"
    assert refusal(number, {"z": "5"}, "z", 0, 10) == "z must be a number in (0, 10]"


def test_a_window_may_be_a_fraction_of_a_second_and_at_most_a_week():
    assert within_ms({"within_s": 0.5}) == 500
    assert within_ms({"within_s": MAX_WITHIN_S}) == MAX_WITHIN_S * 1000
    assert refusal(within_ms, {"within_s": MAX_WITHIN_S + 1}) == "within_s must be a number in (0, 604800]"


def test_a_geofence_id_is_a_non_empty_string_or_absent():
    assert optional_geofence({}) is None and optional_geofence({"geofence_id": "G"}) == "G"
    for bad in ("", 5):
        assert refusal(optional_geofence, {"geofence_id": bad}) == "geofence_id must be a non-empty string"
    assert required_geofence({"geofence_id": "G"}) == "G"
    assert refusal(required_geofence, {}) == "geofence_id is required"


def test_an_event_spec_keeps_its_fields():
    spec = event_spec({"event_type": "EXIT", "geofence_id": "G", "entity_prefix": "truck-", "entity_glob": "*-7",
                       "attributes": {"b": "2", "a": "1"}}, "left", entities=True)
    assert spec == EventSpec("EXIT", "G", "truck-", "*-7", (("a", "1"), ("b", "2")))
    assert event_spec({}, "any", any_type=True) == EventSpec(None)


@pytest.mark.parametrize("spec,kw,reason", [
    ({}, {}, "x: needs event_type one of ENTER, EXIT, DWELL"),
    ({"event_type": "LEAVE"}, {"any_type": True}, "x: needs event_type one of ENTER, EXIT, DWELL"),
    ({"event_type": "ENTER", "entity_prefix": "t"}, {}, "x: unknown field(s) ['entity_prefix']"),
    ({"event_type": "ENTER", "entity_prefix": ""}, {"entities": True}, "x: entity_prefix must be a string of 1-200 characters"),
    ({"event_type": "ENTER", "entity_glob": "g" * (MAX_FILTER_CHARS + 1)}, {"entities": True},
     "x: entity_glob must be a string of 1-200 characters"),
    ({"event_type": "ENTER", "entity_glob": 5}, {"entities": True}, "x: entity_glob must be a string of 1-200 characters"),
    ({"event_type": "ENTER", "attributes": {f"k{i}": "v" for i in range(21)}}, {"entities": True},
     "x: attributes must be an object of up to 20 string values"),
])
def test_each_event_spec_refusal_word_for_word(spec, kw, reason):
    assert refusal(event_spec, spec, "x", **kw) == reason


def test_filters_exactly_at_their_limits_are_taken():
    spec = event_spec({"event_type": "ENTER", "entity_glob": "g" * MAX_FILTER_CHARS,
                       "attributes": {f"k{i}": "v" for i in range(20)}}, "x", entities=True)
    assert len(spec.entity_glob) == MAX_FILTER_CHARS and len(spec.attributes) == 20
