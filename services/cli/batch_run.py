"""`geoflux batch-run`: what the AWS Batch container runs for one attempt of a job.

Reads `{prefix}/{job_id}/inputs.json` from S3, runs the same process code as the in-process
tier (`streams.jobs.runner.run_process`), writes `outputs/result.json` and then
`outputs/manifest.json` (the manifest last: its presence means the outputs are complete),
and exits with the codes `connectors/compute/batch_policy.py` tells Batch how to treat:
0 done, 75 transient (Batch retries the attempt), 2 permanent (no retry). Logs are JSON lines
on stdout, which Batch sends to CloudWatch Logs under the job's log stream.
"""

from __future__ import annotations

import json
import os
import sys
import time

from connectors.compute import batch_policy as bp
from connectors.compute.batch import S3Staging
from geoflux.errors import PermanentError, TransientError, ValidationError
from geoflux.settings import BatchSettings
from streams.jobs.runner import run_process


def _log(**fields) -> None:
    print(json.dumps({"ts": time.time(), "logger": "geoflux.batch-run", **fields}), flush=True)


def batch_run(job_id: str, attempt: int, settings: BatchSettings) -> int:
    staging = S3Staging(settings)
    keys = staging.keys(job_id)
    started = time.time()
    batch_job_id = os.environ.get("AWS_BATCH_JOB_ID")
    base = {"job_id": job_id, "attempt": attempt, "batch_job_id": batch_job_id,
            "image": os.environ.get("GEOFLUX_IMAGE"), "started": started}
    try:
        staged = staging.get_json(keys["inputs"])
        if not isinstance(staged, dict):
            raise PermanentError(f"no staged inputs at s3://{settings.bucket}/{keys['inputs']}")
        _log(event="start", job_id=job_id, attempt=attempt, process_id=staged["process_id"],
             batch_job_id=batch_job_id)

        def progress(pct: int) -> None:
            _log(event="progress", job_id=job_id, progress=pct)

        outputs = run_process(staged["process_id"], staged["inputs"], progress)
        staging.put_json(keys["outputs"], outputs)
        staging.put_json(keys["manifest"], {**base, "status": "ok", "outputs_key": keys["outputs"],
                                            "duration_s": round(time.time() - started, 3)})
        _log(event="done", job_id=job_id, duration_s=round(time.time() - started, 3))
        return bp.EXIT_OK
    except TransientError as exc:
        _log(event="failed", job_id=job_id, error_class="transient", error=str(exc))
        return bp.EXIT_TRANSIENT  # no manifest: the next attempt (Batch's retry) writes it
    except (PermanentError, ValidationError, KeyError, ValueError, TypeError) as exc:
        error_class = getattr(exc, "error_class", "permanent")
        _log(event="failed", job_id=job_id, error_class=error_class, error=str(exc))
        try:
            staging.put_json(keys["manifest"], {**base, "status": "error", "error_class": "permanent",
                                                "error": f"{error_class}: {exc}"[:2000]})
        except TransientError:
            return bp.EXIT_TRANSIENT
        return bp.EXIT_PERMANENT


def main(job_id: str, attempt: int, bucket: str | None, prefix: str | None) -> None:
    overrides = {k: v for k, v in (("bucket", bucket), ("prefix", prefix)) if v}
    settings = BatchSettings(**overrides)
    sys.exit(batch_run(job_id, attempt, settings))
