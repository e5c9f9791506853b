"""Noise control's outputs whole: a silence as stored and listed, every refusal's wording (the
API's 422 detail), and every suppression's reason (recorded with the alert, read by a person
asking "why was I not paged?")."""

import pytest

from geoflux.errors import ValidationError
from streams.alerting.noise import (
    Decision,
    Matcher,
    Silence,
    TenantNoiseState,
    decide,
    fingerprint,
    parse_silence,
)

T0 = 1_700_000_000_000
MATCH_DEPOT = [{"name": "zone", "value": "depot"}]


def test_fingerprint_is_pinned():
    """Fingerprints are kept in the noise state across restarts and deploys: the same rule and
    labels must give the same 24 hex digits forever (sha256 of rule, RS, name US value, ...)."""
    assert fingerprint("r1", {"zone": "depot", "entity": "e1"}) == "5708f33de3a1d91cb434c9ee"


def test_silence_parsed_whole_with_its_defaults():
    s = parse_silence({"tenant_id": "t", "matchers": MATCH_DEPOT, "ends_ms": T0 + 60_000}, "s1", T0)
    assert s == Silence("s1", "t", (Matcher("zone", "depot", False, False),), T0, T0 + 60_000, "", "")
    assert s.to_json() == {"silence_id": "s1", "tenant_id": "t",
                           "matchers": [{"name": "zone", "value": "depot", "regex": False, "negate": False}],
                           "starts_ms": T0, "ends_ms": T0 + 60_000, "comment": "", "created_by": ""}


def test_silence_parsed_whole_with_every_field():
    s = parse_silence({"tenant_id": "t", "starts_ms": T0 - 5, "ends_ms": T0 - 4, "comment": "works",
                       "created_by": "ana", "matchers": [{"name": "zone", "value": "d.*", "regex": 1, "negate": 1}]},
                      "s2", T0)
    assert s == Silence("s2", "t", (Matcher("zone", "d.*", True, True),), T0 - 5, T0 - 4, "works", "ana")


@pytest.mark.parametrize("body,reason", [
    ([], "a silence must be a JSON object"),
    ({"matchers": MATCH_DEPOT, "ends_ms": T0 + 1}, "tenant_id is required"),
    ({"tenant_id": 5, "matchers": MATCH_DEPOT, "ends_ms": T0 + 1}, "tenant_id is required"),
    ({"tenant_id": "t", "matchers": [], "ends_ms": T0 + 1},
     "matchers must be a non-empty list of {name, value[, regex, negate]}"),
    ({"tenant_id": "t", "matchers": "zone=depot", "ends_ms": T0 + 1},
     "matchers must be a non-empty list of {name, value[, regex, negate]}"),
    ({"tenant_id": "t", "matchers": [{"name": 1, "value": "x"}], "ends_ms": T0 + 1},
     "matchers[0] needs string name and value"),
    ({"tenant_id": "t", "matchers": [*MATCH_DEPOT, {"name": "x"}], "ends_ms": T0 + 1},
     "matchers[1] needs string name and value"),
    ({"tenant_id": "t", "matchers": ["zone"], "ends_ms": T0 + 1}, "matchers[0] needs string name and value"),
    ({"tenant_id": "t", "matchers": MATCH_DEPOT}, "ends_ms (epoch ms) is required and must be after starts_ms"),
    ({"tenant_id": "t", "matchers": MATCH_DEPOT, "ends_ms": T0},
     "ends_ms (epoch ms) is required and must be after starts_ms"),
    ({"tenant_id": "t", "matchers": MATCH_DEPOT, "starts_ms": "now", "ends_ms": T0 + 1},
     "ends_ms (epoch ms) is required and must be after starts_ms"),
])
def test_a_refused_silence_says_why(body, reason):
    with pytest.raises(ValidationError) as refused:
        parse_silence(body, "s1", T0)
    assert str(refused.value) == reason


def test_a_bad_regex_is_named_by_its_matcher():
    with pytest.raises(ValidationError) as refused:
        parse_silence({"tenant_id": "t", "matchers": [{"name": "zone", "value": "(", "regex": True}],
                       "ends_ms": T0 + 1}, "s1", T0)
    assert str(refused.value).startswith("matchers[0].value is not a valid regex: ")


def test_a_silence_ending_one_ms_after_it_starts_is_valid():
    assert parse_silence({"tenant_id": "t", "matchers": MATCH_DEPOT, "ends_ms": T0 + 1}, "s1", T0).ends_ms == T0 + 1


def ask(state, fp="f1", severity="info", labels=None, silences=(), now=T0, **kw):
    return decide(state, fp=fp, severity=severity, labels=labels or {}, silences=list(silences), now_ms=now, **kw)


def test_every_suppression_says_why():
    silence = parse_silence({"tenant_id": "t", "matchers": MATCH_DEPOT, "ends_ms": T0 + 60_000}, "s9", T0)
    st = TenantNoiseState()
    assert ask(st, labels={"zone": "depot"}, silences=[silence]) == Decision(False, "silenced by s9")
    assert ask(st) == Decision(True, None)
    # info holds 1800 s: 300 s later, 1500 s of the window are left
    assert ask(st, now=T0 + 300_000) == Decision(
        False, "duplicate: fingerprint f1 is held for another 1500 s of its de-duplication window")
    assert ask(st, fp="f2", now=T0 + 1, rate_limits={"info": 1}) == Decision(
        False, "rate limit: 1 info alerts per hour reached")


def test_a_severity_without_a_default_window_holds_1800_s():
    st = TenantNoiseState()
    assert ask(st, severity="custom", rate_limits={}).allowed
    assert st.held_until == {"f1": T0 + 1_800_000} and st.counts == {"custom": 1}


def test_a_rate_limit_of_one_lets_the_first_through():
    st = TenantNoiseState()
    assert ask(st, rate_limits={"info": 1}) == Decision(True, None)


def test_a_zero_window_holds_nothing_and_a_one_ms_window_holds():
    st = TenantNoiseState()
    assert ask(st, dedup_window_s=0).allowed and st.held_until == {}
    assert ask(st, fp="f2", dedup_window_s=0.001).allowed and st.held_until == {"f2": T0 + 1}
    assert not ask(st, fp="f2", dedup_window_s=0.001).allowed
    assert ask(st, fp="f2", dedup_window_s=0.001, now=T0 + 1).allowed  # the window is [now, now + 1 ms)
