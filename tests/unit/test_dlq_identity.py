"""Which DLQ records replace each other in the operators' view (GET /api/v1/dlq)."""

from services.control.dlq import DlqView


def rec(dlq_id: str, stage: str | None, error_class: str) -> dict:
    return {"dlq_id": dlq_id, "stage": stage, "error_class": error_class}


def test_a_delivery_or_job_failing_again_replaces_its_older_entry():
    assert DlqView._identity("a1:slack", rec("t:0:5", "delivery", "permanent")) == "a1:slack"
    assert DlqView._identity("job-7", rec("t:1:9", "jobs", "timeout")) == "job-7"
    assert DlqView._identity("a1:slack", rec("t:0:5", None, "permanent")) == "a1:slack"  # before stages said


def test_unreadable_records_are_each_their_own_entry_whatever_their_keys():
    # the same key on two topics one stage reads (alerts.deliveries and alerts.retry)
    first = DlqView._identity("acme/poison-0", rec("f.alerts.deliveries:0:1", "delivery", "undecodable"))
    second = DlqView._identity("acme/poison-0", rec("f.alerts.retry:0:1", "delivery", "undecodable"))
    assert first != second
    assert DlqView._identity("k", rec("geo.locations:2:7", "evaluator", "late_excursion")) == "geo.locations:2:7"
