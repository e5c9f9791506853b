"""AWS Batch's pure part, pinned whole: what Batch is told (names, keys, the retry strategy,
tags) is read by Batch and by the next attempt's reconciliation, so every string matters; and
what a DescribeJobs answer means for a job, field by field."""

from connectors.compute import batch_policy as bp


def test_names_keys_tags_and_the_retry_strategy_are_exactly_what_batch_is_told():
    assert bp.job_name("acme/job:1", 3) == "geoflux-acme-job-1-a3"
    long = bp.job_name("j" * 200, 1)
    assert len(long) == 128 and long == ("geoflux-" + "j" * 200 + "-a1")[:128]
    assert bp.job_id_from_name("geoflux-acme-job-1-a3") == "acme-job-1"
    assert bp.job_id_from_name("") is None and bp.job_id_from_name(None) is None
    assert bp.job_id_from_name("other-x-a1") is None
    assert bp.s3_keys("/jobs/", "j1") == {"inputs": "jobs/j1/inputs.json",
                                          "outputs": "jobs/j1/outputs/result.json",
                                          "manifest": "jobs/j1/outputs/manifest.json"}
    assert bp.s3_keys("//", "j1") == {"inputs": "j1/inputs.json", "outputs": "j1/outputs/result.json",
                                      "manifest": "j1/outputs/manifest.json"}
    assert bp.s3_keys(" a ", "j1")["inputs"] == " a /j1/inputs.json"  # only slashes are trimmed
    assert bp.retry_strategy(3) == {"attempts": 3, "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onReason": "CannotPullContainerError*", "action": "RETRY"},
        {"onExitCode": "75", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"}]}
    assert [bp.retry_strategy(n)["attempts"] for n in (0, 1, 10, 11)] == [1, 1, 10, 10]
    assert bp.attempt_timeout_s(59.9) == 60 and bp.attempt_timeout_s(61.5) == 61
    key = "k" * 300
    assert bp.tags("j1", key) == {"geoflux:job_id": "j1", "geoflux:idempotency_key": "k" * 256}
    assert bp.tags("j1", "k", "acme") == {"geoflux:job_id": "j1", "geoflux:idempotency_key": "k",
                                          "geoflux:tenant_id": "acme"}


def test_exit_classification_by_code_and_reason():
    assert bp.classify_exit(0, None) == "ok"
    assert bp.classify_exit(137, "Essential container in task exited") == "permanent"
    assert bp.classify_exit(75, None) == "transient"
    assert bp.classify_exit(1, "Host EC2 (instance i-1) terminated.") == "transient"
    assert bp.classify_exit(1, "CannotPullContainerError: pull access denied") == "transient"
    assert bp.classify_exit(1, "host ec2 lowercase is not Batch's wording") == "permanent"
    assert bp.classify_exit(None, None) == "transient"  # never started a container
    assert bp.classify_exit(0, "Job Attempt Duration Exceeded Timeout") == "timeout"
    assert bp.classify_exit(2, "") == "permanent"


def test_a_describe_jobs_item_is_read_field_by_field():
    item = {"jobId": "b-1", "jobName": "geoflux-j1-a1", "status": "FAILED",
            "statusReason": "Essential container in task exited",
            "attempts": [{"container": {"exitCode": 75, "logStreamName": "old", "reason": "r0"},
                          "statusReason": "first"},
                         {"container": {"exitCode": 2, "logStreamName": "s/2", "reason": "r1"},
                          "statusReason": None}],
            "container": {"image": "img:1", "logStreamName": None}}
    s = bp.read_job(item)
    assert s == bp.BatchState("b-1", "geoflux-j1-a1", "FAILED", "Essential container in task exited",
                              2, "s/2", "img:1", 2, "permanent")
    assert s.finished and s.progress == 0
    # the last attempt's reason decides before the job's: a reclaimed host is retried
    reclaimed = dict(item, attempts=[{"container": {"exitCode": 1}, "statusReason": "Host EC2 (i-9) terminated."}])
    assert bp.read_job(reclaimed).verdict == "transient"
    # no attempt's reason: the container's own reason
    pulled = dict(item, attempts=[{"container": {"exitCode": 1, "reason": "CannotPullContainerError: x"}}])
    assert bp.read_job(pulled).verdict == "transient"
    assert bp.read_job(pulled).reason == "Essential container in task exited"
    assert bp.read_job({"jobId": "b-2"}) == bp.BatchState("b-2", "", "SUBMITTED", None, None, None, None, 0,
                                                          "running")
    assert bp.read_job({"jobId": "b-2"}).progress == 5 and not bp.read_job({"jobId": "b-2"}).finished
    assert bp.read_job({"jobId": "b", "status": "SUCCEEDED"}).verdict == "ok"
    # FAILED with exit 0: a sidecar or the platform failed it
    assert bp.read_job({"jobId": "b", "status": "FAILED", "container": {"exitCode": 0}}).verdict == "transient"
    for status, pct in bp.PROGRESS.items():
        assert bp.read_job({"jobId": "b", "status": status}).progress == pct


def test_a_state_change_event_is_recognised_only_whole():
    detail = {"jobId": "b-1", "status": "RUNNING"}
    event = {"source": "aws.batch", "detail-type": "Batch Job State Change", "detail": detail}
    assert bp.state_change_detail(event) == detail
    assert bp.state_change_detail(dict(event, source="aws.ec2")) is None
    assert bp.state_change_detail(dict(event, **{"detail-type": "Other"})) is None
    assert bp.state_change_detail(dict(event, detail={"status": "RUNNING"})) is None
    assert bp.state_change_detail(dict(event, detail="text")) is None
