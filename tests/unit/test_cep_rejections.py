"""The reasons a pattern is refused, word for word: the API returns them as the 422's detail
and the console shows them, so a person must be told which field and what is wrong with it
(`steps[1]`, not `None`). Each body is valid but for the one field named."""

import pytest

from geoflux.errors import ValidationError
from streams.cep.patterns import parse_pattern

BASE = {"pattern_id": "p", "tenant_id": "t", "severity": "high"}
ENTER_A = {"event_type": "ENTER", "geofence_id": "A"}

CASES = [
    # sequence / absence
    ({"kind": "sequence", "within_s": 60, "steps": [ENTER_A]},
     "a sequence needs steps: a list of 2 or more events"),
    ({"kind": "sequence", "within_s": 60, "steps": "ENTER"},
     "a sequence needs steps: a list of 2 or more events"),
    ({"kind": "sequence", "within_s": 60, "steps": [ENTER_A, ENTER_A], "not_between": "EXIT"},
     "not_between must be a list of events"),
    ({"kind": "sequence", "within_s": 60, "steps": [ENTER_A, {"event_type": "LEAVE"}]},
     "steps[1]: needs event_type one of ENTER, EXIT, DWELL"),
    ({"kind": "sequence", "within_s": 60, "steps": [ENTER_A, ENTER_A], "not_between": [ENTER_A, 5]},
     "not_between[1]: must be an object with event_type"),
    ({"kind": "sequence", "within_s": 0, "steps": [ENTER_A, ENTER_A]}, "within_s must be a number in (0, 604800]"),
    ({"kind": "absence", "within_s": 60, "expected": ENTER_A}, "trigger: must be an object with event_type"),
    ({"kind": "absence", "within_s": 60, "trigger": ENTER_A, "expected": {"event_type": "EXIT", "x": 1}},
     "expected: unknown field(s) ['x']"),
    # count / comovement
    ({"kind": "count", "within_s": 60, "at_least": 3, "event": ENTER_A, "per": "tenant"},
     "per must be entity or geofence"),
    ({"kind": "count", "within_s": 60, "event": ENTER_A}, "at_least must be a number in (0, 10000]"),
    ({"kind": "count", "within_s": 60, "at_least": 3}, "event: must be an object with event_type"),
    ({"kind": "count", "within_s": 60, "at_least": 10_001, "event": ENTER_A}, "at_least must be a number in (0, 10000]"),
    ({"kind": "comovement", "within_s": 60, "at_least": 1}, "a convoy needs at_least 2 entities"),
    ({"kind": "comovement", "within_s": 60, "at_least": 10_001}, "at_least must be a number in (0, 10000]"),
    ({"kind": "comovement", "within_s": 60, "at_least": 2, "geofence_id": ""},
     "geofence_id must be a non-empty string"),
    # join
    ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER", "geofence_id": "A"},
      "right": {"event_type": "ENTER"}},
     "left: geofence_id belongs to the pattern (both sides share the fence)"),
    ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER"},
      "right": {"event_type": "ENTER", "geofence_id": "A"}},
     "right: geofence_id belongs to the pattern (both sides share the fence)"),
    ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER", "entity_glob": ""},
      "right": {"event_type": "ENTER"}},
     "left: entity_glob must be a string of 1-200 characters"),
    ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER"},
      "right": {"event_type": "ENTER", "attributes": {"a": 1}}},
     "right: attributes must be an object of up to 20 string values"),
    ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER"}, "right": {"event_type": "ENTER"},
      "max_distance_m": 0}, "max_distance_m must be a number in (0, 1e+07]"),
    ({"kind": "join", "within_s": 60, "left": {"event_type": "ENTER"}, "right": {"event_type": "ENTER"},
      "max_distance_m": 10_000_000.5}, "max_distance_m must be a number in (0, 1e+07]"),
    # presence
    ({"kind": "time_of_day", "geofence_id": "G", "from_hour": 22, "to_hour": 22},
     "from_hour and to_hour must be different integers 0-24 (UTC)"),
    ({"kind": "time_of_day", "geofence_id": "G", "from_hour": 22, "to_hour": 25},
     "from_hour and to_hour must be different integers 0-24 (UTC)"),
    ({"kind": "time_of_day", "geofence_id": "G", "from_hour": True, "to_hour": 6},
     "from_hour and to_hour must be different integers 0-24 (UTC)"),
    ({"kind": "time_of_day", "from_hour": 22, "to_hour": 6}, "geofence_id is required"),
    ({"kind": "track_gap"}, "within_s must be a number in (0, 604800]"),
    # speed / outliers
    ({"kind": "speed", "max_speed_kmh": 120, "min_distance_m": -1}, "min_distance_m must be a number in [0, 1e+07]"),
    ({"kind": "speed", "max_speed_kmh": 120, "min_distance_m": 10_000_000.5},
     "min_distance_m must be a number in [0, 1e+07]"),
    ({"kind": "speed", "max_speed_kmh": 1_000_000.5}, "max_speed_kmh must be a number in (0, 1e+06]"),
    ({"kind": "dwell_outlier", "direction": "up"}, "direction must be long, short or both"),
    ({"kind": "dwell_outlier", "min_samples": 4}, "min_samples must be a number in (4, 1e+06]"),
    ({"kind": "rate_outlier", "window_s": 60, "min_count": 0}, "min_count must be a number in [1, 1e+06]"),
    ({"kind": "dwell_outlier", "z": 0}, "z must be a number in (0, 100]"),
    ({"kind": "dwell_outlier", "z": 100.5}, "z must be a number in (0, 100]"),
    ({"kind": "dwell_outlier", "min_samples": 1_000_000.5}, "min_samples must be a number in (4, 1e+06]"),
    ({"kind": "dwell_outlier", "min_ratio": 0.99}, "min_ratio must be a number in [1, 1e+06]"),
    ({"kind": "dwell_outlier", "min_ratio": 1_000_000.5}, "min_ratio must be a number in [1, 1e+06]"),
    ({"kind": "dwell_outlier", "geofence_id": 5}, "geofence_id must be a non-empty string"),
    ({"kind": "rate_outlier"}, "window_s must be a number in (0, 604800]"),
    ({"kind": "rate_outlier", "window_s": 60, "z": 100.5}, "z must be a number in (0, 100]"),
    ({"kind": "rate_outlier", "window_s": 60, "baseline_windows": 1}, "baseline_windows must be a number in (1, 10000]"),
    ({"kind": "rate_outlier", "window_s": 60, "baseline_windows": 10_000.5},
     "baseline_windows must be a number in (1, 10000]"),
    ({"kind": "rate_outlier", "window_s": 60, "min_windows": 0}, "min_windows must be a number in [1, 1e+06]"),
    ({"kind": "rate_outlier", "window_s": 60, "min_windows": 1_000_000.5}, "min_windows must be a number in [1, 1e+06]"),
    ({"kind": "rate_outlier", "window_s": 60, "min_count": 1_000_000.5}, "min_count must be a number in [1, 1e+06]"),
    ({"kind": "rate_outlier", "window_s": 60, "geofence_id": ""}, "geofence_id must be a non-empty string"),
    # the pattern's own fields
    ({"kind": "sequence", "within_s": 60, "steps": [ENTER_A, ENTER_A], "overlap": "all"},
     "overlap must be skip_past_last or allow"),
    ({"kind": "count", "within_s": 60, "at_least": 2, "event": ENTER_A, "lateness_s": 86_401},
     "lateness_s must be a number in [0, 86400]"),
]


@pytest.mark.parametrize("body,reason", CASES, ids=[r for _, r in CASES])
def test_a_refused_pattern_says_which_field_and_why(body, reason):
    with pytest.raises(ValidationError) as refused:
        parse_pattern({**BASE, **body})
    assert str(refused.value) == reason


def test_the_kind_and_severity_reasons_list_what_is_allowed():
    with pytest.raises(ValidationError) as refused:
        parse_pattern({**BASE, "kind": "nope"})
    assert str(refused.value).startswith("kind must be one of sequence, absence, ")
    with pytest.raises(ValidationError) as refused:
        parse_pattern({**BASE, "severity": "loud", "kind": "track_gap", "within_s": 60})
    assert str(refused.value).startswith("severity must be one of ")
