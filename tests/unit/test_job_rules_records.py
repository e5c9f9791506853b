"""Job quotas and job alerts, pinned where mutation testing found nothing holding them: each
limit exactly at its value, the rate window's edge, the wait a refusal names, the refusals'
wording (the API's 429/413 detail), and every field of a job alert."""

import hashlib

import pytest

from geoflux.errors import ValidationError
from streams.jobs import alert_policy as ap
from streams.jobs.quotas import WINDOW_MS, Decision, Quota, decide, parse_quotas, quota_for, usage

NOW = 10_000_000


# -- quotas -------------------------------------------------------------------------------------
def test_usage_counts_jobs_created_less_than_a_minute_ago_oldest_first():
    use = usage(3, [NOW - 10, NOW - WINDOW_MS, NOW - WINDOW_MS + 1, NOW - 70_000], NOW)
    assert use == {"concurrent_jobs": 3, "submissions_last_minute": 2, "oldest_recent_ms": NOW - WINDOW_MS + 1}
    assert usage(0, [], NOW) == {"concurrent_jobs": 0, "submissions_last_minute": 0, "oldest_recent_ms": None}


def test_input_of_exactly_the_limit_is_admitted_and_one_byte_more_is_413():
    q = Quota(max_input_bytes=100)
    assert decide(q, usage(0, [], NOW), 100, NOW, 5) == Decision(True)
    assert decide(q, usage(0, [], NOW), 101, NOW, 5) == Decision(
        False, 413, "max_input_bytes", "inputs are 101 bytes; this tenant's limit is 100")


def test_the_rate_limit_refuses_the_submission_that_would_exceed_it_and_names_the_wait():
    q = Quota(submissions_per_minute=2)
    assert decide(q, usage(0, [NOW - 1000], NOW), 1, NOW, 5).allowed  # one below the limit
    # the oldest recent job leaves the window 15.5 s from now: retry in 16 s, whole seconds up
    d = decide(q, usage(0, [NOW - 44_500, NOW - 1000], NOW), 1, NOW, 5)
    assert d == Decision(False, 429, "submissions_per_minute",
                         "2 jobs submitted in the last minute; this tenant's limit is 2", 16)
    assert decide(q, usage(0, [NOW - 45_000, NOW - 1], NOW), 1, NOW, 5).retry_after_s == 15
    assert decide(q, usage(0, [NOW - 44_999, NOW - 1], NOW), 1, NOW, 5).retry_after_s == 16  # 15.001 s
    # leaving the window in under a second still asks for a whole second
    assert decide(q, usage(0, [NOW - 59_999, NOW - 1], NOW), 1, NOW, 5).retry_after_s == 1


def test_a_limit_of_zero_refuses_every_submission_for_a_whole_window():
    d = decide(Quota(submissions_per_minute=0), usage(0, [], NOW), 1, NOW, 5)
    assert (d.allowed, d.rule, d.retry_after_s) == (False, "submissions_per_minute", 60)
    assert decide(Quota(concurrent_jobs=0), usage(0, [], NOW), 1, NOW, 7).retry_after_s == 7


def test_the_concurrency_limit_refuses_at_the_limit_with_the_configured_wait():
    q = Quota(concurrent_jobs=2)
    assert decide(q, usage(1, [], NOW), 1, NOW, 5).allowed
    assert decide(q, usage(2, [], NOW), 1, NOW, 5) == Decision(
        False, 429, "concurrent_jobs", "2 jobs queued or running; this tenant's limit is 2", 5)


def test_quotas_parse_nulls_and_zeros_and_refuse_the_rest_with_the_rule():
    qs = parse_quotas({"acme": {"concurrent_jobs": 0, "max_input_bytes": None}, "*": {}})
    assert qs == {"acme": Quota(concurrent_jobs=0), "*": Quota()}
    assert qs["acme"].to_json() == {"concurrent_jobs": 0, "submissions_per_minute": None, "max_input_bytes": None}
    assert parse_quotas(None) == {}
    assert quota_for({"acme": Quota(1), "*": Quota(9)}, "acme") == Quota(1)
    for bad, reason in (
            ({"a": {"nope": 1}}, "quotas for 'a' take only concurrent_jobs, submissions_per_minute, max_input_bytes"),
            ({"a": ["concurrent_jobs"]}, "quotas for 'a' take only concurrent_jobs, submissions_per_minute, max_input_bytes"),
            ({"a": {"concurrent_jobs": True}}, "quota a.concurrent_jobs must be a non-negative integer or null"),
            ({"a": {"max_input_bytes": -1}}, "quota a.max_input_bytes must be a non-negative integer or null")):
        with pytest.raises(ValidationError) as e:
            parse_quotas(bad)
        assert str(e.value) == reason


# -- job alerts ---------------------------------------------------------------------------------
def test_severity_is_critical_from_the_critical_priority_up():
    assert ap.determine_severity(7, "permanent") == "high"
    assert ap.determine_severity(8, "permanent") == "critical"
    assert ap.determine_severity(3, "transient", True, critical_priority=3) == "critical"
    assert ap.determine_severity(2, "transient", True, critical_priority=3) == "warning"
    assert ap.determine_severity(2, None) == "high"
    assert ap.determine_severity(2, "transient") == "high"  # not retrying unless told


def test_the_sla_is_breached_only_past_its_limit_and_only_while_queued():
    created = 1_000_000
    assert not ap.sla_breached("accepted", None, created, 300, created + 300_000)  # exactly at the limit
    assert ap.sla_breached("accepted", None, created, 0.5, created + 501)
    assert not ap.sla_breached("accepted", None, created, 0.5, created + 500)
    assert not ap.sla_breached("accepted", 100, 0, 300, 900_000)  # started, status not caught up
    assert ap.sla_limit_s("union", {"union": 60}, 300) == 60.0 and isinstance(ap.sla_limit_s("x", {}, 300), float)


def test_channels_come_from_the_tenant_entry_when_there_is_one_even_if_empty():
    cfg = {"acme": None, "*": {"high": ["pager"]}}
    assert ap.channels_for(cfg, "acme", "high") == [] and ap.channels_for(cfg, "zed", "high") == ["pager"]
    got = ap.channels_for(cfg, "zed", "high")
    got.append("x")
    assert cfg["*"]["high"] == ["pager"]  # a copy: a caller's edit does not change the config


def test_a_failure_alert_is_the_whole_record():
    job = {"job_id": "j1", "tenant_id": "acme", "process_id": "union"}
    a = ap.job_alert("timed-out", job, severity="high", channels=["ops"], now_ms=5, error_class="timeout",
                     error="x" * 5000, retry_count=2, duration_ms=1550, fallback_channel="email",
                     dedup_window_s=600.0)
    assert a == {
        "alert_id": hashlib.sha256(b"geoprocessing:job:j1:timed-out").hexdigest()[:32],
        "fingerprint": "geoprocessing:job:j1:timed-out", "tenant_id": "acme", "rule_id": "job-timed-out",
        "severity": "high", "title": "Geoprocessing job timed out: union",
        "body": ("Job 'union' (j1) failed after 2 retry attempt(s) in 1.6 s: timeout: " + "x" * 5000)[:4000],
        "channels": ["ops"], "source_id": "j1:timed-out",
        "labels": {"job_id": "j1", "process_id": "union", "tenant_id": "acme", "kind": "timed-out",
                   "severity": "high", "priority": "5", "error_class": "timeout", "error_message": "x" * 1000,
                   "retry_count": "2", "duration_ms": "1550", "tier": "", "rule_id": "job-timed-out"},
        "created_ms": 5, "fallback_channel": "email", "source": "job", "suppressed_reason": None,
        "dedup_window_s": 600.0, "escalation_policy": None, "action": "trigger", "resolve_key": None}
    assert len(a["body"]) == 4000
    plain = ap.job_alert("failed", job, severity="high", channels=[], now_ms=5)
    assert plain["body"] == "Job 'union' (j1) failed after 0 retry attempt(s) in 0.0 s: : "
    assert {k: plain["labels"][k] for k in ("error_class", "error_message", "retry_count", "duration_ms")} == {
        "error_class": "", "error_message": "", "retry_count": "0", "duration_ms": "0"}


def test_an_sla_breach_alert_says_how_long_the_job_has_been_queued():
    job = {"job_id": "j2", "tenant_id": "acme", "process_id": "buffer", "priority": 9, "tier": "batch"}
    a = ap.job_alert("sla-breach", job, severity="critical", channels=[], now_ms=7, duration_ms=1_500_400)
    assert a["body"] == "Job j2 (buffer, priority 9) has been queued for 1500 s"
    assert a["title"] == "Geoprocessing job queued past its SLA: buffer"
    assert (a["labels"]["priority"], a["labels"]["tier"], a["fallback_channel"], a["dedup_window_s"]) == (
        "9", "batch", None, None)
    bare = ap.job_alert("sla-breach", {"job_id": "j3", "tenant_id": "acme", "process_id": "clip"},
                        severity="high", channels=[], now_ms=7)
    assert bare["body"] == "Job j3 (clip, priority 5) has been queued for 0 s"
    assert [ap.TITLES[k].format(process_id="p") for k in ("failed", "retries-exhausted")] == [
        "Geoprocessing job failed: p", "Geoprocessing job retries exhausted: p"]
