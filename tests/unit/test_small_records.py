"""Small pure modules no unit test imported, pinned so mutation testing can measure them: where
a job's objects live (the object store's key is the contract between API, worker and the
bucket's lifecycle rule) and the DLQ envelope every stage writes."""

from schemas.dlq import dlq_record
from streams.jobs.object_keys import inputs_key, results_key


def test_job_objects_live_under_their_expiring_prefixes():
    assert (inputs_key("j1"), results_key("j1")) == ("inputs/j1.json", "results/j1.json")


def test_a_dlq_record_is_the_whole_envelope_with_its_defaults(monkeypatch):
    monkeypatch.setattr("schemas.dlq.time.time", lambda: 1234.5678)
    assert dlq_record("geo.t", 3, 42, b"k", b"v", "validation", "x" * 3000, "evaluator") == {
        "dlq_id": "geo.t:3:42", "original_topic": "geo.t", "original_partition": 3, "original_offset": 42,
        "original_key": b"k", "original_value": b"v", "error_class": "validation", "error_message": "x" * 2000,
        "attempts": 1, "first_failure_ms": 1234567, "last_failure_ms": 1234567, "redrive_topic": "geo.t",
        "stage": "evaluator"}
    given = dlq_record("geo.t", 0, 0, None, None, "processing", "boom", "cep", attempts=3, first_failure_ms=99,
                       redrive_topic="geo.redrive", dlq_id="custom")
    assert (given["dlq_id"], given["attempts"], given["first_failure_ms"], given["last_failure_ms"],
            given["redrive_topic"], given["original_key"]) == ("custom", 3, 99, 1234567, "geo.redrive", None)
