"""Where a job's objects live in the object store (connectors/object_store.py). Both prefixes
expire after the idempotency window: the file backend's sweep, or the bucket's lifecycle rule
on S3 (docs/ARCHITECTURE.md). Pure."""

INPUTS = "inputs"  # staged inputs too large for a Kafka record, written by the API
RESULTS = "results"  # every job's outputs, written by the worker before the job is successful


def inputs_key(job_id: str) -> str:
    return f"{INPUTS}/{job_id}.json"


def results_key(job_id: str) -> str:
    return f"{RESULTS}/{job_id}.json"
