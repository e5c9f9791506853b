"""The AWS Batch tier: large jobs run in a container (`geoflux batch-run`) on AWS Batch.

One attempt of a geoflux job is one Batch job named `geoflux-{job_id}-a{attempt}`:

1. inputs are staged to `s3://{bucket}/{prefix}/{job_id}/inputs.json`;
2. Batch has no idempotency token, so before submitting the tier lists the queue's jobs with
   that name (ListJobs, JOB_NAME filter; any status) and adopts the one it finds: a worker
   that crashed after submitting, and re-reads the request, never starts a second Batch job;
3. SubmitJob carries the retry strategy (batch_policy.retry_strategy), a per-attempt
   timeout, tags with the job id and idempotency key;
4. completion arrives as a "Batch Job State Change" event (EventBridge -> SNS -> our signed
   endpoint -> `jobs.batch` -> `notify`), with DescribeJobs every `poll_interval_s` as the
   fallback when no event comes;
5. on SUCCEEDED the result manifest and outputs are read from S3.

boto3 errors are converted by `connectors/aws.py`: throttling, 5xx and connection failures
are transient; other client errors (a queue that does not exist) are permanent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from connectors.aws import client, convert
from connectors.compute import batch_policy as bp
from connectors.compute.base import JobCancelled, JobContext, JobTimedOut
from connectors.object_store_s3 import S3ObjectStore
from geoflux.errors import PermanentError, TransientError
from geoflux.settings import BatchSettings

QUEUE_ALLOWANCE_S = 3600.0  # time a job may wait for capacity on top of its attempts


class S3Staging:
    """The S3 layout both sides share (the worker and the container), on the object store's
    S3 backend."""

    def __init__(self, s: BatchSettings) -> None:
        self.s = s
        self.store = S3ObjectStore(s.bucket, "", region=s.region, endpoint_url=s.endpoint_url)

    def keys(self, job_id: str) -> dict[str, str]:
        return bp.s3_keys(self.s.prefix, job_id)

    def put_json(self, key: str, body: object) -> None:
        self.store.put(key, json.dumps(body).encode())

    def get_json(self, key: str) -> object | None:
        data = self.store.get(key)
        return None if data is None else json.loads(data)


class BatchTier:
    name = "batch"

    def __init__(self, settings: BatchSettings,
                 record: Callable[[dict], None] | None = None) -> None:
        if not settings.job_queue:
            raise PermanentError("the batch tier needs GEOFLUX_BATCH_JOB_QUEUE")
        self.s = settings
        self.staging = S3Staging(settings)
        self.batch = client("batch", settings.region, settings.endpoint_url)
        self.record = record or (lambda _event: None)  # -> jobs.batch
        self._events: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._images: dict[str, str | None] = {}

    def supports(self, process_id: str) -> bool:
        return True  # the container runs every process of the catalogue (`geoflux batch-run`)

    def ensure_schema(self) -> None:
        pass  # the job queue and its definition exist before the worker starts (GEOFLUX_BATCH_*)

    def close(self) -> None:
        pass  # boto3 clients hold nothing that needs closing

    # -- events from SNS / EventBridge (jobs.batch, followed by the worker) ---------------------
    def notify(self, event: dict) -> None:
        if event.get("source") != "submit":
            with self._lock:
                self._events[event["batch_job_id"]] = event

    def _take_event(self, batch_job_id: str) -> dict | None:
        with self._lock:
            return self._events.pop(batch_job_id, None)

    # -- calls ----------------------------------------------------------------------------------
    def image(self) -> str | None:
        jd = self.s.job_definition
        if jd not in self._images:
            try:
                name = jd.split("/")[-1]
                args = {"jobDefinitions": [jd]} if ":" in name else {"jobDefinitionName": name,
                                                                     "status": "ACTIVE"}
                defs = self.batch.describe_job_definitions(**args)["jobDefinitions"]
            except (ClientError, BotoCoreError) as exc:
                raise convert(exc, "DescribeJobDefinitions") from exc
            defs.sort(key=lambda d: d.get("revision", 0))
            self._images[jd] = ((defs[-1].get("containerProperties") or {}).get("image")
                                if defs else None)
        return self._images[jd]

    def find_existing(self, name: str) -> dict | None:
        """The Batch job already submitted under `name`, in any status (ListJobs with a
        filter ignores jobStatus and lists every status)."""
        try:
            pages = self.batch.get_paginator("list_jobs").paginate(
                jobQueue=self.s.job_queue, filters=[{"name": "JOB_NAME", "values": [name]}])
            found = [j for page in pages for j in page.get("jobSummaryList", [])
                     if j.get("jobName") == name]
        except (ClientError, BotoCoreError) as exc:
            raise convert(exc, "ListJobs") from exc
        return max(found, key=lambda j: j.get("createdAt", 0)) if found else None

    def submit(self, ctx: JobContext, inputs: dict) -> tuple[str, bool]:
        """(batch job id, submitted now). Stages the inputs, then adopts or submits."""
        keys = self.staging.keys(ctx.job_id)
        self.staging.put_json(keys["inputs"], {"job_id": ctx.job_id, "process_id": ctx.process_id,
                                               "idempotency_key": ctx.idempotency_key,
                                               "inputs": inputs})
        name = bp.job_name(ctx.job_id, ctx.attempt)
        existing = self.find_existing(name)
        if existing:
            return existing["jobId"], False
        command = ["batch-run", "--job-id", ctx.job_id, "--attempt", str(ctx.attempt),
                   "--bucket", self.s.bucket, "--prefix", self.s.prefix]
        try:
            resp = self.batch.submit_job(
                jobName=name, jobQueue=self.s.job_queue, jobDefinition=self.s.job_definition,
                parameters={"job_id": ctx.job_id, "inputs": f"s3://{self.s.bucket}/{keys['inputs']}"},
                containerOverrides={"command": command, "environment": [
                    {"name": "GEOFLUX_BATCH_BUCKET", "value": self.s.bucket},
                    {"name": "GEOFLUX_BATCH_PREFIX", "value": self.s.prefix},
                    {"name": "GEOFLUX_BATCH_REGION", "value": self.s.region}]},
                retryStrategy=bp.retry_strategy(self.s.attempts),
                timeout={"attemptDurationSeconds": bp.attempt_timeout_s(ctx.timeout_s)},
                tags=bp.tags(ctx.job_id, ctx.idempotency_key, ctx.tenant_id), propagateTags=True)
        except (ClientError, BotoCoreError) as exc:
            raise convert(exc, "SubmitJob") from exc
        return resp["jobId"], True

    def describe(self, batch_job_id: str) -> bp.BatchState | None:
        try:
            jobs = self.batch.describe_jobs(jobs=[batch_job_id])["jobs"]
        except (ClientError, BotoCoreError) as exc:
            raise convert(exc, "DescribeJobs") from exc
        return bp.read_job(jobs[0]) if jobs else None

    def terminate(self, batch_job_id: str, reason: str) -> None:
        try:
            self.batch.terminate_job(jobId=batch_job_id, reason=reason[:250])
        except (ClientError, BotoCoreError):
            pass  # best effort: the job is ours to forget either way

    def manifest(self, job_id: str, attempt: int) -> dict | None:
        """This attempt's manifest (an earlier attempt's is never taken for this one's)."""
        m = self.staging.get_json(self.staging.keys(job_id)["manifest"])
        return m if isinstance(m, dict) and m.get("attempt") == attempt else None

    # -- one attempt ----------------------------------------------------------------------------
    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        report = ctx.report or (lambda _line: None)
        image = await asyncio.to_thread(self.image)
        batch_job_id, fresh = await asyncio.to_thread(self.submit, ctx, inputs)
        name = bp.job_name(ctx.job_id, ctx.attempt)
        self.record({"job_id": ctx.job_id, "batch_job_id": batch_job_id, "job_name": name,
                     "status": "SUBMITTED", "image": image, "source": "submit",
                     "updated_ms": int(time.time() * 1000)})
        report(f"AWS Batch job {batch_job_id} ({'submitted' if fresh else 'adopted: already submitted'}), "
               f"image {image}")
        progress(5)
        deadline = time.monotonic() + bp.attempt_timeout_s(ctx.timeout_s) * self.s.attempts + QUEUE_ALLOWANCE_S
        next_poll = time.monotonic() + self.s.poll_interval_s
        succeeded_at: float | None = None
        last_status = None
        while True:
            if cancelled():
                await asyncio.to_thread(self.terminate, batch_job_id, f"dismissed: job {ctx.job_id}")
                raise JobCancelled(f"job {ctx.job_id} dismissed; Batch job {batch_job_id} terminated")
            if time.monotonic() > deadline:
                await asyncio.to_thread(self.terminate, batch_job_id, "geoflux deadline")
                raise JobTimedOut(f"Batch job {batch_job_id} not finished within its deadline")
            state = None
            event = self._take_event(batch_job_id)
            if event is not None:
                state = bp.read_job({"jobId": batch_job_id, "jobName": name, "status": event["status"],
                                     "statusReason": event.get("status_reason"),
                                     "container": {"exitCode": event.get("exit_code"),
                                                   "logStreamName": event.get("log_stream")}})
            elif time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.s.poll_interval_s
                state = await asyncio.to_thread(self.describe, batch_job_id)
                if state is not None and state.status != last_status:
                    self.record({"job_id": ctx.job_id, "batch_job_id": batch_job_id, "job_name": name,
                                 "status": state.status, "status_reason": state.reason,
                                 "exit_code": state.exit_code, "image": image,
                                 "log_stream": state.log_stream, "attempts": state.attempts,
                                 "source": "poll", "updated_ms": int(time.time() * 1000)})
            if state is not None:
                last_status = state.status
                if not state.finished:
                    progress(state.progress)
                else:
                    if state.log_stream:
                        report(f"AWS Batch job {batch_job_id} {state.status}, image {image}, "
                               f"log stream {state.log_stream}")
                    manifest = await asyncio.to_thread(self.manifest, ctx.job_id, ctx.attempt)
                    if state.verdict == "ok" or (manifest and manifest.get("status") == "ok"):
                        if manifest is not None:
                            return await asyncio.to_thread(self._outputs, ctx, manifest)
                        succeeded_at = succeeded_at or time.monotonic()
                        if time.monotonic() - succeeded_at > self.s.manifest_grace_s:
                            raise TransientError(f"Batch job {batch_job_id} SUCCEEDED but wrote no "
                                                 f"result manifest within {self.s.manifest_grace_s:g} s")
                    else:
                        self._raise_failure(batch_job_id, state, manifest)
            await asyncio.sleep(0.05)

    def _outputs(self, ctx: JobContext, manifest: dict) -> dict:
        if manifest.get("status") != "ok":
            raise PermanentError(f"job {ctx.job_id}: {manifest.get('error')}")
        outputs = self.staging.get_json(manifest["outputs_key"])
        if not isinstance(outputs, dict):
            raise TransientError(f"job {ctx.job_id}: manifest names {manifest['outputs_key']}, "
                                 "which is missing")
        return outputs

    @staticmethod
    def _raise_failure(batch_job_id: str, state: bp.BatchState, manifest: dict | None) -> None:
        why = (manifest or {}).get("error") or state.reason or "no reason given"
        message = (f"Batch job {batch_job_id} {state.status} after {state.attempts} attempt(s), "
                   f"exit code {state.exit_code}: {why}")
        verdict = (manifest or {}).get("error_class") or state.verdict
        if verdict == "timeout":
            raise JobTimedOut(message)
        if verdict == "transient":
            raise TransientError(message)
        raise PermanentError(message)
