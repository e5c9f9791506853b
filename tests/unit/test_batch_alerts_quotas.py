"""The pure parts of the Batch tier, job alerts and quotas: no broker, no AWS, milliseconds."""

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connectors.compute import batch_policy as bp
from connectors.compute.sns_signature import cert_url_allowed, string_to_sign, verify
from geoflux.errors import BadSignature
from geoflux.settings import BatchSettings
from streams.jobs import alert_policy as ap
from streams.jobs.quotas import Quota, decide, parse_quotas, quota_for, usage

RECORDED = json.loads((Path(__file__).parent / "data" / "batch_describe_jobs.json").read_text())
# -- AWS Batch policy ---------------------------------------------------------------------------
def test_retry_strategy_retries_interruptions_and_exits_on_application_errors():
    rs = bp.retry_strategy(3)
    assert rs["attempts"] == 3 and len(rs["evaluateOnExit"]) <= 5  # Batch's limit
    rules = rs["evaluateOnExit"]
    assert rules[0] == {"onStatusReason": "Host EC2*", "action": "RETRY"}
    assert {"onExitCode": "75", "action": "RETRY"} in rules
    assert rules[-1] == {"onReason": "*", "action": "EXIT"}  # the explicit catch-all
    assert bp.retry_strategy(50)["attempts"] == 10 and bp.retry_strategy(0)["attempts"] == 1


@pytest.mark.parametrize("code,reason,verdict", [
    (0, "Essential container in task exited", "ok"),
    (75, None, "transient"), (2, None, "permanent"), (1, None, "permanent"), (137, "OutOfMemoryError", "permanent"),
    (None, "Host EC2 (instance i-1) terminated.", "transient"),
    (None, "CannotPullContainerError: pull rate", "transient"),
    (137, "Job attempt duration exceeded timeout", "timeout"), (None, None, "transient")])
def test_exit_classification(code, reason, verdict):
    assert bp.classify_exit(code, reason) == verdict


def test_names_keys_tags_timeout():
    name = bp.job_name("7f3a-uuid", 2)
    assert name == "geoflux-7f3a-uuid-a2" and bp.job_id_from_name(name) == "7f3a-uuid"
    assert bp.job_id_from_name("someone-else") is None
    assert bp.s3_keys("jobs", "j1")["inputs"] == "jobs/j1/inputs.json"
    assert bp.s3_keys("", "j1")["manifest"] == "j1/outputs/manifest.json"
    assert bp.tags("j", "auto:abc", "acme") == {"geoflux:job_id": "j", "geoflux:idempotency_key": "auto:abc",
                                                 "geoflux:tenant_id": "acme"}
    assert bp.attempt_timeout_s(5) == 60 and bp.attempt_timeout_s(1800) == 1800


def test_recorded_runnable_and_running_are_in_progress():
    runnable, running = bp.read_job(RECORDED["runnable"]), bp.read_job(RECORDED["running"])
    assert not runnable.finished and runnable.progress == 15 and runnable.image.endswith("geoflux:1.4.0")
    assert not running.finished and running.progress == 50
    assert running.log_stream == "geoflux-batch/default/0a1b2c"


def test_recorded_retries_by_evaluate_on_exit_then_success():
    s = bp.read_job(RECORDED["spot_then_success"])
    assert s.verdict == "ok" and s.attempts == 3 and s.exit_code == 0
    assert s.log_stream == "geoflux-batch/default/cc"  # the attempt that succeeded
    # each earlier attempt is one Batch retried, by the strategy's rules
    first, second = RECORDED["spot_then_success"]["attempts"][:2]
    assert bp.classify_exit(first["container"].get("exitCode"), first["statusReason"]) == "transient"
    assert bp.classify_exit(second["container"]["exitCode"], second["statusReason"]) == "transient"


@pytest.mark.parametrize("name,verdict", [("app_error", "permanent"), ("spot_exhausted", "transient"),
                                          ("timeout", "timeout")])
def test_recorded_failures(name, verdict):
    s = bp.read_job(RECORDED[name])
    assert s.finished and s.verdict == verdict


def test_state_change_event_detail():
    event = {"source": "aws.batch", "detail-type": "Batch Job State Change",
             "detail": RECORDED["running"]}
    assert bp.state_change_detail(event)["jobId"] == "5e1c"
    assert bp.state_change_detail({"source": "aws.ec2", "detail": {}}) is None


# -- SNS signatures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def signer():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.local")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


def signed(key, version="2", **fields):
    msg = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:1:batch",
           "Message": json.dumps({"source": "aws.batch"}), "SignatureVersion": version,
           "Timestamp": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **fields}
    algo = hashes.SHA256() if version == "2" else hashes.SHA1()
    msg["Signature"] = base64.b64encode(key.sign(string_to_sign(msg), padding.PKCS1v15(), algo)).decode()
    return msg


def test_sns_signature_versions_1_and_2_verify(signer):
    key, pem = signer
    verify(signed(key, "2"), pem)
    verify(signed(key, "1", Subject="batch"), pem)


def test_sns_tampered_or_unsigned_or_stale_is_refused(signer):
    key, pem = signer
    msg = signed(key)
    with pytest.raises(BadSignature):
        verify({**msg, "Message": '{"source": "evil"}'}, pem)
    with pytest.raises(BadSignature):  # what moto sends: a placeholder signature
        verify({**msg, "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7"}, pem)
    with pytest.raises(BadSignature):
        verify({**msg, "SignatureVersion": "3"}, pem)
    old = signed(key, Timestamp="2020-01-01T00:00:00.000Z")
    with pytest.raises(BadSignature):
        verify(old, pem)
    verify(old, pem, max_age_s=None)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(BadSignature):
        verify(signed(other), pem)


def test_sns_string_to_sign_follows_the_aws_field_order():
    msg = {"Type": "SubscriptionConfirmation", "MessageId": "i", "Token": "t", "TopicArn": "a",
           "Message": "m", "SubscribeURL": "u", "Timestamp": "ts"}
    assert string_to_sign(msg) == (b"Message\nm\nMessageId\ni\nSubscribeURL\nu\nTimestamp\nts\n"
                                   b"Token\nt\nTopicArn\na\nType\nSubscriptionConfirmation\n")


def test_cert_url_must_be_an_sns_host_over_https():
    pattern = BatchSettings().sns_cert_url_pattern
    assert cert_url_allowed("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", pattern)
    for bad in ("http://sns.eu-west-1.amazonaws.com/x.pem", "https://sns.eu-west-1.amazonaws.com.evil.io/x.pem",
                "https://evil.io/sns.us-east-1.amazonaws.com/x.pem", ""):
        assert not cert_url_allowed(bad, pattern)


# -- job alerts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("priority,error_class,retry,severity", [
    (9, "permanent", False, "critical"), (8, "transient", True, "critical"),
    (5, "permanent", False, "high"), (5, "validation", False, "high"),
    (5, "transient", True, "warning"), (5, "transient", False, "high"), (5, "timeout", False, "high")])
def test_determine_severity_like_the_seed(priority, error_class, retry, severity):
    assert ap.determine_severity(priority, error_class, retry) == severity


def test_kinds_fingerprints_channels_and_sla():
    assert [ap.kind_for(c) for c in ("timeout", "transient", "permanent", "unexpected")] == [
        "timed-out", "retries-exhausted", "failed", "failed"]
    assert ap.fingerprint("j1", "failed") == "geoprocessing:job:j1:failed"
    assert ap.alert_id("j1", "failed") == ap.alert_id("j1", "failed") != ap.alert_id("j1", "sla-breach")
    cfg = {"acme": {"high": ["ops"]}, "*": {"critical": ["pager"]}}
    assert ap.channels_for(cfg, "acme", "high") == ["ops"] and ap.channels_for(cfg, "acme", "critical") == []
    assert ap.channels_for(cfg, "globex", "critical") == ["pager"] and ap.channels_for({}, "x", "high") == []
    assert ap.sla_breached("accepted", None, 0, 300, 300_001)
    assert not ap.sla_breached("accepted", None, 0, 300, 299_000)
    assert not ap.sla_breached("running", 5, 0, 300, 900_000)
    assert ap.sla_limit_s("union", {"union": 60}, 300) == 60 and ap.sla_limit_s("buffer", {}, 300) == 300


def test_job_alert_carries_the_seed_annotations():
    job = {"job_id": "j1", "tenant_id": "acme", "process_id": "union", "priority": 9, "tier": "batch"}
    a = ap.job_alert("failed", job, severity="critical", channels=["ops"], now_ms=5, error_class="permanent",
                     error="GEOS boom", retry_count=2, duration_ms=1500, dedup_window_s=600)
    assert a["fingerprint"] == "geoprocessing:job:j1:failed" and a["alert_id"] == ap.alert_id("j1", "failed")
    assert {k: a["labels"][k] for k in ("job_id", "process_id", "tenant_id", "error_message", "retry_count",
                                        "duration_ms")} == {
        "job_id": "j1", "process_id": "union", "tenant_id": "acme", "error_message": "GEOS boom",
        "retry_count": "2", "duration_ms": "1500"}
    assert a["source"] == "job" and a["channels"] == ["ops"] and "after 2 retry" in a["body"]
    from schemas.codec import AvroCodec
    AvroCodec().encode("x", "Alert", a)  # the contract


# -- quotas -------------------------------------------------------------------------------------
def test_quota_rules_one_by_one():
    q = Quota(concurrent_jobs=2, submissions_per_minute=3, max_input_bytes=100)
    now = 1_000_000
    use = usage(1, [now - 90_000, now - 20_000], now)  # one job running; one created recently
    assert use == {"concurrent_jobs": 1, "submissions_last_minute": 1, "oldest_recent_ms": now - 20_000}
    assert decide(q, use, 50, now, 5).allowed
    d = decide(q, use, 101, now, 5)
    assert (d.allowed, d.status, d.rule) == (False, 413, "max_input_bytes")
    busy = usage(2, [], now)
    d = decide(q, busy, 10, now, 5)
    assert (d.status, d.rule, d.retry_after_s) == (429, "concurrent_jobs", 5)
    fast = usage(0, [now - 45_000 + i for i in range(3)], now)
    d = decide(q, fast, 10, now, 5)
    assert (d.status, d.rule, d.retry_after_s) == (429, "submissions_per_minute", 15)
    assert decide(Quota(), busy, 10**9, now, 5).allowed  # None: unlimited


def test_quota_parsing_and_defaults():
    qs = parse_quotas({"acme": {"concurrent_jobs": 1}, "*": {"submissions_per_minute": 10}})
    assert quota_for(qs, "acme").concurrent_jobs == 1 and quota_for(qs, "zed").submissions_per_minute == 10
    assert quota_for({}, "x") == Quota()
    for bad in ({"a": {"nope": 1}}, {"a": {"concurrent_jobs": -1}}, {"a": {"concurrent_jobs": "2"}}):
        with pytest.raises(Exception):
            parse_quotas(bad)


def test_sns_refusals_say_why_in_these_words(signer):
    key, pem = signer
    msg = signed(key, Timestamp="2026-01-01T00:00:00.000Z")
    sent = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    verify(msg, pem, now_s=sent + 3600)  # exactly the maximum age is still fresh
    with pytest.raises(BadSignature, match=r"^SNS message is older than 3600 s \(replay\?\)$"):
        verify(msg, pem, now_s=sent + 3600.5)
    with pytest.raises(BadSignature, match=r"^SNS message is older than 10 s"):
        verify(msg, pem, now_s=sent - 11, max_age_s=10)  # from the future counts too
    cases = [
        ({**msg, "SignatureVersion": "3"}, "^unsupported SignatureVersion '3'$"),
        ({k: v for k, v in msg.items() if k != "SignatureVersion"}, "^unsupported SignatureVersion ''$"),
        ({**msg, "Signature": "not base64!"}, "^Signature is not base64$"),
        ({**msg, "Signature": base64.b64encode(b"x" * 256).decode()}, "^SNS signature does not verify$"),
        ({**msg, "Type": "Other"}, "^unknown SNS message Type 'Other'$"),
        ({k: v for k, v in msg.items() if k != "Type"}, "^unknown SNS message Type None$"),
    ]
    for bad, reason in cases:
        with pytest.raises(BadSignature, match=reason):
            verify(bad, pem, now_s=sent)
    with pytest.raises(BadSignature, match="^signing certificate unreadable"):
        verify(msg, b"not a certificate", now_s=sent)
    unreadable = signed(key, Timestamp="yesterday")
    with pytest.raises(BadSignature, match="^SNS Timestamp unreadable$"):
        verify(unreadable, pem)
    with pytest.raises(BadSignature, match="^SNS message lacks MessageId$"):
        string_to_sign({k: v for k, v in msg.items() if k != "MessageId"})


def test_sns_subject_is_signed_when_present_and_skipped_when_absent():
    base = {"Type": "Notification", "Message": "m", "MessageId": "i", "Timestamp": "t", "TopicArn": "a"}
    assert string_to_sign(base) == b"Message\nm\nMessageId\ni\nTimestamp\nt\nTopicArn\na\nType\nNotification\n"
    assert string_to_sign({**base, "Subject": "s"}) == (
        b"Message\nm\nMessageId\ni\nSubject\ns\nTimestamp\nt\nTopicArn\na\nType\nNotification\n")
    assert string_to_sign({**base, "subject": "ignored"}) == string_to_sign(base)
