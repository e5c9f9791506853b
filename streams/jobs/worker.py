"""The job worker: runs geoprocessing jobs from `jobs.requests` and `jobs.retry`.

- Several workers share the queue through the consumer group: a job's partition, and so the
  job, belongs to one worker at a time. Read-ahead requests (`buffer`) run in priority
  order, so higher-priority jobs overtake lower ones under load.
- Status (compacted `jobs.status`) moves accepted -> running (with progress) -> successful /
  failed / dismissed; outputs go to the object store (read there by the API) and
  `jobs.results`. A finished job is never run again (the worker follows `jobs.status` into a
  local store), and PostGIS side effects are tied to the idempotency key.
- Transient failures retry through `jobs.retry` with exponential backoff up to
  `max_attempts`; then, like permanent failures and timeouts, the job lands in `jobs.dlq`
  with its full context and is FAILED with the reason and attempt count.
- Dismissals arrive on `jobs.control`; a running job is stopped (child killed, statement
  cancelled).
- Subscriber callbacks (successUri, inProgressUri, failedUri) go through the alert delivery
  path (`alerts.deliveries`): retried, signed, dead-lettered, never fire-and-forget.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import structlog

from connectors.compute.base import ComputeTier, JobCancelled, JobContext, JobTimedOut
from connectors.object_store import ObjectStore, open_object_store
from connectors.topic_reader import TopicReader
from geoflux.errors import PermanentError, TransientError, ValidationError
from geoflux.settings import BatchSettings, JobSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from streams.runtime.at_least_once import AtLeastOnceWorker, Work
from streams.jobs.object_keys import INPUTS, RESULTS, results_key
from streams.jobs.processes import PROCESSES, input_size, validate_inputs
from streams.runtime.sensor import NullStageSensor, StageSensor
from streams.jobs.status_view import StatusView, open_private_store
from streams.runtime.txn_processor import now_ms

log = structlog.get_logger("geoflux.jobs")
FINAL = {"successful", "failed", "dismissed"}
STAGE = "jobs"  # in DLQ records and metrics
UNREAD_RETRY_S = 2.0
VIEW_CATCH_UP_S = 30.0


def choose_tier(process_id: str, parsed_inputs: dict, settings: JobSettings,
                tiers: dict[str, ComputeTier], raw_bytes: int = 0) -> str:
    forced = settings.tiers.get(process_id)
    if forced:
        return forced
    if "batch" in tiers and raw_bytes > settings.batch_threshold_bytes:
        return "batch"  # large inputs: a container on AWS Batch
    postgis = tiers.get("postgis")
    if (postgis is not None and postgis.supports(process_id)
            and input_size(parsed_inputs) > settings.postgis_threshold_vertices):
        return "postgis"
    return "inprocess"


def timeout_for(process_id: str, requested: float | None, settings: JobSettings) -> float:
    t = requested or settings.timeouts_s.get(process_id) or settings.default_timeout_s
    return min(max(t, settings.min_timeout_s), settings.max_timeout_s)


class JobStage(AtLeastOnceWorker):
    stage = STAGE
    poll_max = 100
    # jobs queued while no worker ran start by priority, not by which partition's fetch came
    # back first (with one slot, a low-priority job started before the high ones were read)
    gather_s = 0.5

    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: JobSettings,
                 tiers: dict[str, ComputeTier], objects: ObjectStore | None = None,
                 sensor: StageSensor | None = None) -> None:
        self.t_requests = topic("jobs.requests", kafka)
        self.t_retry = topic("jobs.retry", kafka)
        super().__init__(kafka, codec, "geoflux-jobs", [self.t_requests, self.t_retry])
        self.s, self.tiers = settings, tiers
        self.max_in_flight = settings.concurrency
        self.backlog_limit = settings.buffer
        self.objects = objects or open_object_store()
        self.sensor = sensor or NullStageSensor()
        self.t_status = topic("jobs.status", kafka)
        self.t_results = topic("jobs.results", kafka)
        self.t_dlq = topic("jobs.dlq", kafka)
        self.t_deliveries = topic("alerts.deliveries", kafka)
        # every job's status (to skip finished ones) and dismissal on local disk, not in memory;
        # in memory only the statuses of jobs this worker is running (read-your-writes)
        store, path = open_private_store("jobs-worker")
        self.view = StatusView(kafka, codec, store, indexed=False, private_dir=path)
        self.live: dict[str, dict] = {}
        self._next_sweep, self._sweeping = time.monotonic(), None
        self.control_reader = TopicReader(kafka, topic("jobs.control", kafka), "ConfigRecord", codec,
                                          self._apply_control)
        self.t_batch = topic("jobs.batch", kafka)
        self.batch_reader = None
        batch = tiers.get("batch")
        if batch is not None:  # SNS/EventBridge state changes reach the tier through jobs.batch
            batch.record = lambda rec: self.produce(self.t_batch, rec["job_id"], "BatchEvent", rec)
            self.batch_reader = TopicReader(kafka, self.t_batch, "BatchEvent", codec,
                                            lambda _k, rec, _m: bool(rec and batch.notify(rec) is None))

    # -- views --------------------------------------------------------------------------------
    def _apply_control(self, job_id: str, rec: dict | None, _msg) -> bool:
        if rec is not None and not rec["deleted"]:
            self.view.store.write([(b"d" + job_id.encode(), b"")])
        return rec is not None

    def is_dismissed(self, job_id: str) -> bool:
        return self.view.store.get(b"d" + job_id.encode()) is not None

    def _known(self, job_id: str) -> dict | None:
        return self.live.get(job_id) or self.view.get(job_id)

    def _done(self, job_id: str) -> bool:
        """Succeeded or dismissed: never run again. A failed job runs again when it is
        redriven from the DLQ (a person decided so)."""
        st = self._known(job_id)
        return bool(st and st["status"] in ("successful", "dismissed"))

    # -- producing ----------------------------------------------------------------------------
    def _status(self, req: dict, status: str, **fields) -> dict:
        prev = self._known(req["job_id"]) or {}
        now = now_ms()
        rec = {"job_id": req["job_id"], "tenant_id": req["tenant_id"], "process_id": req["process_id"],
               "status": status, "progress": prev.get("progress", 0), "message": None,
               "tier": prev.get("tier"), "attempt": req["attempt"],
               "created_ms": req["created_ms"], "started_ms": prev.get("started_ms"),
               "finished_ms": None, "updated_ms": now, "idempotency_key": req["idempotency_key"],
               "priority": req["priority"], "idempotency_header": req["idempotency_header"]}
        rec.update(fields)
        if status in FINAL:
            rec["finished_ms"] = now
        self.live[req["job_id"]] = rec  # read-your-writes while this worker runs the job
        self.produce(self.t_status, req["job_id"], "JobStatus", rec)
        return rec

    def _callback(self, req: dict, kind: str, status: dict) -> None:
        url = req["subscriber"].get(kind)  # subscriber: the three URIs and a sealed "secret"
        if not url:
            return
        now = now_ms()
        self.produce(self.t_deliveries, req["job_id"], "DeliveryAttempt", {
            "delivery_id": f"{req['job_id']}:{kind}", "alert_id": req["job_id"],
            "tenant_id": req["tenant_id"], "channel": "job-callback", "fallback_channel": None,
            "fallback_for": None, "severity": "info", "action": "trigger",
            "title": f"job {req['job_id']} {status['status']}",
            "body": "", "labels": {"callback_url": url, "job_id": req["job_id"],
                                   "status": status["status"], "progress": str(status["progress"]),
                                   "message": status["message"] or "",
                                   # sealed by the API; only the delivery worker opens it
                                   **({"callback_secret": req["subscriber"]["secret"]}
                                      if req["subscriber"].get("secret") else {})},
            "alert_created_ms": now, "attempt": 1, "outcome": None, "error_class": None,
            "error_message": None, "first_failure_ms": None, "not_before_ms": now, "created_ms": now})

    def _dead_letter(self, job: Work, req: dict, error_class: str, message: str) -> None:
        now = now_ms()
        self.produce(self.t_dlq, req["job_id"], "DlqRecord", {
            "dlq_id": f"{req['job_id']}-{uuid.uuid4().hex[:8]}", "original_topic": job.tp[0],
            "original_partition": job.tp[1], "original_offset": job.offset,
            "original_key": req["job_id"].encode(),
            "original_value": self.codec.encode(self.t_requests, "JobRequest",
                                                dict(req, attempt=0, not_before_ms=0)),
            "error_class": error_class, "error_message": message[:2000], "attempts": req["attempt"],
            "first_failure_ms": req["first_failure_ms"] or now, "last_failure_ms": now,
            "redrive_topic": self.t_requests, "stage": STAGE})
        self.sensor.dead_lettered(STAGE, error_class)

    # -- running a job --------------------------------------------------------------------------
    async def handle(self, job: Work) -> None:
        await self._run(job)
        self.finish(job)  # not when cancelled at stop: the next owner runs it again

    async def _run(self, job: Work) -> None:
        req = dict(job.record, attempt=job.record["attempt"] + 1)
        try:
            if self._done(req["job_id"]):
                return  # already finished (a re-read after a crash, or a duplicate request)
            if self.is_dismissed(req["job_id"]):
                self._status(req, "dismissed", message="dismissed before it started")
                return
            # before the first await, so the line follows every request read before this one
            # was chosen: which worker ran which job, in which order (scale-out tests read it)
            log.info("job started", job_id=req["job_id"], topic=job.tp[0], partition=job.tp[1],
                     offset=job.offset, priority=req["priority"], attempt=req["attempt"])
            process = PROCESSES.get(req["process_id"])
            if process is None:
                raise PermanentError(f"no process {req['process_id']!r}")
            data = await asyncio.to_thread(self._inputs, req)
            try:
                raw = json.loads(data)
            except ValueError as exc:
                raise ValidationError(f"inputs are not JSON: {exc}") from None
            tier_name = choose_tier(req["process_id"], validate_inputs(process, raw), self.s, self.tiers,
                                    len(data))
            tier = self.tiers.get(tier_name)
            if tier is None:
                raise PermanentError(f"tier {tier_name!r} is not configured on this worker")
            timeout = timeout_for(req["process_id"], req["timeout_s"], self.s)
            running = self._status(req, "running", tier=tier_name, started_ms=now_ms(), progress=0,
                                   message=f"attempt {req['attempt']} on {tier_name}")
            if req["attempt"] == 1:
                self._callback(req, "inProgressUri", running)
            last = [0, 0.0]
            note = [f"attempt {req['attempt']} on {tier_name}"]

            def progress(pct: int) -> None:
                # persisted, but at most every 5 points or once a second
                if pct >= last[0] + 5 or time.monotonic() - last[1] > 1 or pct == 100:
                    last[0], last[1] = pct, time.monotonic()
                    self._status(req, "running", progress=min(pct, 99), message=note[0])

            def report(line: str) -> None:  # where the tier runs it (Batch job, log stream)
                note[0] = f"attempt {req['attempt']} on {tier_name}: {line}"
                self._status(req, "running", message=note[0])

            ctx = JobContext(req["job_id"], req["idempotency_key"], req["process_id"],
                             req["attempt"], timeout, req["tenant_id"], report)
            outputs = await tier.run(ctx, raw, progress, lambda: self.is_dismissed(req["job_id"]))
            await self._keep_results(req, outputs, tier_name)
            # `successful` only once the result record is acknowledged: a worker killed in
            # between leaves the job to run again, never successful without its result
            if await asyncio.to_thread(self.producer.flush, 30):
                raise TransientError("the job's result is not acknowledged by the broker yet")
            done = self._status(req, "successful", progress=100, message="done")
            self._callback(req, "successUri", done)
            await self._unstage(req)
        except JobCancelled as exc:
            self._status(req, "dismissed", message=str(exc))
            await self._unstage(req)
        except JobTimedOut as exc:
            self._fail(job, req, "timeout", str(exc))
        except TransientError as exc:
            self._retry(job, req, exc)
        except (PermanentError, ValidationError) as exc:
            self._fail(job, req, exc.error_class, str(exc))
        except Exception as exc:  # a bug must end in the DLQ, not in a dead worker
            log.exception("unexpected job error", job_id=req["job_id"])
            self._fail(job, req, "unexpected", f"{type(exc).__name__}: {exc}")
        finally:
            self.live.pop(req["job_id"], None)

    async def _keep_results(self, req: dict, outputs: dict, tier_name: str) -> None:
        """The outputs go to the object store (where the API reads them) before the job is
        successful; `jobs.results` carries their key, and the outputs themselves when small."""
        data = json.dumps(outputs).encode()
        await asyncio.to_thread(self.objects.put, results_key(req["job_id"]), data)
        self.produce(self.t_results, req["job_id"], "JobResult", {
            "job_id": req["job_id"], "idempotency_key": req["idempotency_key"],
            "outputs": data.decode() if len(data) <= self.s.inline_input_bytes else "",
            "outputs_ref": results_key(req["job_id"]), "tier": tier_name, "finished_ms": now_ms()})

    def _sweep(self) -> None:
        """Staged inputs and results older than the idempotency window go (the file object
        store; an S3 bucket's lifecycle rule does this there)."""
        age_s = self.s.idempotency_ttl_days * 86_400
        try:
            removed = sum(self.objects.sweep(prefix, age_s) for prefix in (INPUTS, RESULTS))
        except Exception as exc:  # the next sweep tries again
            log.warning("sweeping expired job objects failed", store=self.objects.url, error=str(exc))
            return
        if removed:
            log.info("expired job objects removed", count=removed, store=self.objects.url)

    def _inputs(self, req: dict) -> bytes:
        if not req["inputs_ref"]:
            return req["inputs"].encode()
        data = self.objects.get(req["inputs_ref"])  # TransientError while the store is unreachable
        if data is None:
            raise PermanentError(f"staged inputs {req['inputs_ref']} are gone from {self.objects.url} "
                                 "(staged inputs expire with the idempotency window)")
        return data

    async def _unstage(self, req: dict) -> None:
        """Staged inputs of a finished job are not needed again (a failed job keeps them for a
        redrive until they expire)."""
        if req["inputs_ref"]:
            try:
                await asyncio.to_thread(self.objects.delete, req["inputs_ref"])
            except Exception as exc:  # it expires with the others
                log.warning("staged inputs not deleted", key=req["inputs_ref"], error=str(exc))

    def _fail(self, job: Work, req: dict, error_class: str, message: str) -> None:
        req = dict(req, first_failure_ms=req["first_failure_ms"] or now_ms())
        self._dead_letter(job, req, error_class, message)
        failed = self._status(req, "failed", message=f"{error_class}: {message} (after "
                                                     f"{req['attempt']} attempt(s); in the DLQ)")
        self._callback(req, "failedUri", failed)

    def _retry(self, job: Work, req: dict, exc: Exception) -> None:
        now = now_ms()
        req = dict(req, first_failure_ms=req["first_failure_ms"] or now, last_error=str(exc)[:1000])
        if req["attempt"] >= self.s.max_attempts_by_process.get(req["process_id"], self.s.max_attempts):
            return self._fail(job, req, "transient", str(exc))
        delay = self.s.backoff_s[min(req["attempt"] - 1, len(self.s.backoff_s) - 1)]
        self.produce(self.t_retry, req["job_id"], "JobRequest",
                      dict(req, not_before_ms=now + int(delay * 1000)))
        self._status(req, "accepted", message=f"attempt {req['attempt']} failed ({exc}); "
                                              f"retrying in {delay:g} s")

    # -- reading requests -----------------------------------------------------------------------
    def rank(self, job: Work) -> tuple:
        return -job.record["priority"], job.record["created_ms"]

    def intake(self, msg) -> None:
        """A request into the queue; what cannot be read goes to the DLQ (never a crash, never
        a silent skip), except while the schema registry is unreachable: read again later."""
        tp = (msg.topic(), msg.partition())
        try:
            req = self.codec.decode(msg.value(), "JobRequest")
            if not req["job_id"]:
                raise ValidationError("a job request without a job id")
        except TransientError as exc:
            log.warning("job request not readable yet; trying again", offset=msg.offset(), error=str(exc))
            self.read_later(msg, UNREAD_RETRY_S)
            return
        except Exception as exc:
            error_class = "undecodable" if isinstance(exc, PermanentError) else "unexpected"
            log.error("unreadable job request dead-lettered", topic=tp[0], partition=tp[1],
                      offset=msg.offset(), error=str(exc)[:300])
            self._dead_letter_raw(msg, error_class, f"{type(exc).__name__}: {exc}")
            self.tracker.done(tp, msg.offset())
            return
        log.debug("job request read", job_id=req["job_id"], topic=tp[0], partition=tp[1],
                  offset=msg.offset(), priority=req["priority"])
        self.hold(Work(tp, msg.offset(), req), req["not_before_ms"] / 1000)

    def _dead_letter_raw(self, msg, error_class: str, message: str) -> None:
        """The record as it was read, bytes and key, for a person to see and redrive."""
        now = now_ms()
        dlq_id = f"{msg.topic()}-{msg.partition()}-{msg.offset()}"
        self.produce(self.t_dlq, (msg.key() or b"").decode(errors="replace") or dlq_id, "DlqRecord", {
            "dlq_id": dlq_id, "original_topic": msg.topic(), "original_partition": msg.partition(),
            "original_offset": msg.offset(), "original_key": msg.key(), "original_value": msg.value(),
            "error_class": error_class, "error_message": message[:2000], "attempts": 0,
            "first_failure_ms": now, "last_failure_ms": now, "redrive_topic": msg.topic(),
            "stage": STAGE})
        self.sensor.dead_lettered(STAGE, error_class)

    # -- the shell's hooks ----------------------------------------------------------------------
    async def open(self) -> None:
        self.view.start()
        self.control_reader.load().follow()
        if self.batch_reader is not None:
            self.batch_reader.load().follow()
        for tier in self.tiers.values():
            try:
                await asyncio.to_thread(tier.ensure_schema)
            except Exception as exc:  # PostgreSQL down at start: jobs retry later
                log.warning("tier not ready at start", tier=tier.name, error=str(exc))

    def assigned(self, partitions: list) -> None:
        """A request read again here may be one its last owner finished just before it let the
        partition go (a request after it still unfinished kept the offset back): the statuses
        that owner wrote must be in this worker's view before any such request is looked at."""
        if not self.view.reader.applied_through_now(VIEW_CATCH_UP_S):
            log.warning("job statuses not read to their end at assignment; a finished job may run again",
                        partitions=len(partitions))

    def housekeeping(self) -> None:
        if time.monotonic() >= self._next_sweep and (self._sweeping is None or self._sweeping.done()):
            self._sweeping = asyncio.ensure_future(asyncio.to_thread(self._sweep))
            self._next_sweep = time.monotonic() + self.s.sweep_interval_s

    async def close(self) -> None:
        for tier in self.tiers.values():
            tier.close()
        self.control_reader.close()
        self.view.close()
        if self.batch_reader is not None:
            self.batch_reader.close()


def run_jobs(kafka: KafkaSettings, codec: AvroCodec, settings: JobSettings, pg_dsn: str | None,
             sensor: StageSensor | None = None) -> None:
    from connectors.compute.inprocess import InProcessTier
    from connectors.compute.postgis import PostgisTier
    from streams.jobs.runner import run_process

    tiers: dict[str, ComputeTier] = {"inprocess": InProcessTier(run_process, settings.concurrency,
                                                                settings.child_max_jobs)}
    if "noop" in settings.tiers.values():
        from connectors.compute.noop import NoopTier
        tiers["noop"] = NoopTier()
    if pg_dsn:
        tiers["postgis"] = PostgisTier(pg_dsn)
    batch = BatchSettings()
    if batch.job_queue:
        from connectors.compute.batch import BatchTier
        tiers["batch"] = BatchTier(batch)
    worker = JobStage(kafka, codec, settings, tiers, sensor=sensor)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.serve()
