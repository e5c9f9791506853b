"""Jobs as the API and CLI see them: submit with idempotency, status, results, dismissal.

Statuses come from the followed `jobs.status` topic in a local store
(streams/jobs/status_view.py), results from the object store, both read on demand: an API
process holds neither every job's status nor every result in memory.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import structlog

from connectors.channels.http import (CallbackSecretMissing, check_subscriber_secret,
                                      install_callback_secret, seal_secret)
from connectors.kafka_producer import ReliableProducer
from connectors.object_store import ObjectStore, open_object_store
from geoflux.errors import NotFound, QuotaExceeded, ResultsGone, ValidationError
from geoflux.settings import AlertSettings, JobSettings, KafkaSettings, QuotaSettings, StreamSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.control.job_writer import AtomicWriter
from streams.jobs import idempotency
from streams.jobs.object_keys import inputs_key, results_key
from streams.jobs.processes import PROCESSES, input_size, validate_inputs
from streams.jobs.quotas import Quota, decide, parse_quotas, quota_for, usage
from streams.jobs.status_view import StatusView, open_private_store

log = structlog.get_logger("geoflux.jobs")
FINAL = ("successful", "failed", "dismissed")
URIS = ("successUri", "inProgressUri", "failedUri")
SUBMIT_THREADS = 64
# room in a request body for what surrounds the inputs (subscriber, options, whitespace): an
# input at GEOFLUX_JOBS_MAX_INPUT_BYTES always reaches the quota check, which answers 413 with
# the reason, instead of being cut off by the body limit
EXECUTE_ENVELOPE_BYTES = 1024 * 1024


def body_limit(settings: JobSettings) -> int:
    return max(16 * 1024 * 1024, settings.max_input_bytes + EXECUTE_ENVELOPE_BYTES)


class NoSuchProcess(NotFound):
    error_class = "no-such-process"


class NoSuchJob(NotFound):
    error_class = "no-such-job"




class JobsService:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: JobSettings,
                 producer: ReliableProducer | None = None, quotas: QuotaSettings | None = None,
                 objects: ObjectStore | None = None, stream: StreamSettings | None = None) -> None:
        self.kafka, self.codec, self.s = kafka, codec, settings
        self.quota_settings = quotas or QuotaSettings()
        self.callbacks = AlertSettings()  # the install's callback secret seals subscribers' own
        self.quotas = parse_quotas(self.quota_settings.tenants)
        self.producer = producer or ReliableProducer(kafka)
        self.t_requests = topic("jobs.requests", kafka)
        self.t_status = topic("jobs.status", kafka)
        self.t_control = topic("jobs.control", kafka)
        self.ttl_ms = int(settings.idempotency_ttl_days * 86_400_000)
        store, path = open_private_store("api-jobs", stream)
        self.view = StatusView(kafka, codec, store, private_dir=path)
        self.objects = objects or open_object_store()
        self.writer = AtomicWriter(kafka, "api-jobs")
        # a submission mostly waits for its transaction; many waiting at once share one
        # (group commit), so they get threads of their own, not the loop's few default ones
        self.submissions = ThreadPoolExecutor(SUBMIT_THREADS, thread_name_prefix="job-submit")
        self._submit_lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}  # index key -> its submission being written
        self._in_flight: dict[str, int] = {}  # tenant -> submissions being written
        self._stop = threading.Event()
        self._expiry = threading.Thread(target=self._expire, name="jobs-index-expiry", daemon=True)

    def start(self) -> "JobsService":
        self.view.start()
        self._expiry.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.submissions.shutdown(wait=False, cancel_futures=True)
        self.writer.close()
        self.view.close()

    def _expire(self) -> None:
        while not self._stop.wait(min(self.s.sweep_interval_s, max(1.0, self.ttl_ms / 4000))):
            try:
                self.view.expire_index(int(time.time() * 1000) - self.ttl_ms)
            except Exception as exc:  # the next round tries again; lookups check the age anyway
                log.warning("idempotency index expiry failed", error=str(exc))

    # -- reads --------------------------------------------------------------------------------
    def get(self, job_id: str, tenant_id: str | None = None) -> dict:
        st = self.view.get(job_id)
        if st is None or (tenant_id is not None and st["tenant_id"] != tenant_id):
            raise NoSuchJob(f"no job {job_id}")
        return st

    def page(self, tenant_id: str | None = None, status: str | None = None,
             process_id: str | None = None, offset: int = 0, limit: int = 100) -> tuple[list[dict], int]:
        """Jobs newest first, and how many match in all."""
        return self.view.page(tenant_id, status, process_id, offset, limit)

    def result(self, job_id: str) -> dict | None:
        """A successful job's outputs; None while it has none. ResultsGone once they expired."""
        st = self.get(job_id)
        if st["status"] != "successful":
            return None
        if time.time() * 1000 - (st["finished_ms"] or st["updated_ms"]) >= self.ttl_ms:
            raise ResultsGone(f"the results of job {job_id} expired "
                              f"{self.s.idempotency_ttl_days:g} days after it finished")
        data = self.objects.get(results_key(job_id))
        if data is None:  # the worker writes them before the status says successful
            raise ResultsGone(f"the results of job {job_id} are no longer in the object store")
        return json.loads(data)

    async def wait(self, job_id: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.get(job_id)
            if st["status"] in FINAL or time.monotonic() > deadline:
                return st
            await asyncio.sleep(0.05)  # polling the followed status view

    def quota(self, tenant_id: str) -> dict:
        """A tenant's limits and what it uses now (GET /api/v1/tenants/{id}/quotas)."""
        use = self._usage(tenant_id, int(time.time() * 1000))
        return {"tenant_id": tenant_id, "limits": self._quota(tenant_id).to_json(),
                "usage": {k: v for k, v in use.items() if k != "oldest_recent_ms"}}

    def small(self, process_id: str, inputs: object) -> bool:
        return input_size(validate_inputs(PROCESSES[process_id], inputs)) <= self.s.sync_max_vertices

    # -- writes -------------------------------------------------------------------------------
    def submit(self, process_id: str, inputs: object, *, tenant_id: str = "default",
               priority: int = 5, subscriber: dict | None = None, timeout_s: float | None = None,
               idempotency_header: str | None = None) -> tuple[dict, bool]:
        """Returns (status, created). An identical request of the same tenant within the TTL
        returns the existing job (unless it failed or was dismissed: then asking again runs it
        again); an Idempotency-Key header already used for another request is refused."""
        process = PROCESSES.get(process_id)
        if process is None:
            raise NoSuchProcess(f"no process {process_id!r}")
        raw = json.dumps(inputs, separators=(",", ":")).encode()
        too_big = decide(self._quota(tenant_id), usage(0, (), 0), len(raw), 0, 0)
        if not too_big.allowed:  # before parsing megabytes of geometry only to refuse them
            raise QuotaExceeded(too_big)
        validate_inputs(process, inputs)
        if not isinstance(priority, int) or not 0 <= priority <= 9:
            raise ValidationError("priority must be an integer 0-9 (9 runs first)")
        subscriber = self._subscriber(subscriber)
        if timeout_s is not None and not (self.s.min_timeout_s <= timeout_s <= self.s.max_timeout_s):
            raise ValidationError(f"timeout_s must be between {self.s.min_timeout_s:g} and "
                                  f"{self.s.max_timeout_s:g} seconds")
        header = idempotency.check_header(idempotency_header)
        key = idempotency.request_key(tenant_id, process_id, inputs, header)
        index = idempotency.index_key(tenant_id, header, key)
        now = int(time.time() * 1000)
        earlier = self._reserve(index, tenant_id, process_id, key, header, len(raw), now)
        if earlier is not None:
            return earlier, False
        try:
            job_id = str(uuid.uuid4())
            staged = inputs_key(job_id) if len(raw) > self.s.inline_input_bytes else None
            req = {"job_id": job_id, "idempotency_key": key, "tenant_id": tenant_id,
                   "process_id": process_id, "priority": priority,
                   "inputs": "" if staged else raw.decode(), "inputs_ref": staged,
                   "subscriber": subscriber, "attempt": 0, "timeout_s": timeout_s,
                   "created_ms": now, "not_before_ms": 0, "first_failure_ms": None,
                   "last_error": None, "idempotency_header": header}
            status = {"job_id": job_id, "tenant_id": tenant_id, "process_id": process_id,
                      "status": "accepted", "progress": 0, "message": "queued", "tier": None,
                      "attempt": 0, "created_ms": now, "started_ms": None, "finished_ms": None,
                      "updated_ms": now, "idempotency_key": key, "priority": priority,
                      "idempotency_header": header}
            if staged:
                self.objects.put(staged, raw)
            try:
                # request and status in one transaction: see services/control/job_writer.py
                self.writer.write([
                    (self.t_requests, self.codec.encode(self.t_requests, "JobRequest", req), job_id),
                    (self.t_status, self.codec.encode(self.t_status, "JobStatus", status), job_id)])
            except Exception:
                if staged:
                    self._discard(staged)
                raise
            self.view.record_own(status)
            return status, True
        finally:
            self._release(index, tenant_id)

    def _subscriber(self, subscriber: object) -> dict:
        """The callbacks as the request will carry them: the URIs, and the subscriber's own
        signing secret sealed (never stored or echoed in clear)."""
        subscriber = dict(subscriber or {}) if isinstance(subscriber, dict) or not subscriber else None
        if subscriber is None or not all(
                (k in URIS and isinstance(v, str) and v.startswith(("http://", "https://")))
                or k == "secret" for k, v in subscriber.items()):
            raise ValidationError("subscriber takes successUri, inProgressUri, failedUri as http(s) URLs, "
                                  "and optionally its own signing secret")
        if not subscriber:
            return {}
        if not any(k in URIS for k in subscriber):
            raise ValidationError("subscriber.secret without a callback URI")
        try:
            install = install_callback_secret(self.callbacks.callback_secret.get_secret_value(),
                                              self.callbacks.callback_secret_file)
        except CallbackSecretMissing as exc:  # we could not sign its callbacks: say so now
            raise ValidationError(f"job callbacks are not available here: {exc}") from None
        if "secret" in subscriber:
            subscriber["secret"] = seal_secret(install, check_subscriber_secret(subscriber["secret"]))
        return subscriber

    def _reserve(self, index: str, tenant_id: str, process_id: str, key: str, header: str | None,
                 input_bytes: int, now: int) -> dict | None:
        """The earlier job to answer with, or None after reserving room for a new one (under
        the tenant's quota, counting submissions still being written). A request whose twin is
        being written waits for that write: it then answers with the twin's job."""
        while True:
            with self._submit_lock:
                twin = self._pending.get(index)
                if twin is None:
                    earlier = self.view.indexed_job(index)
                    if idempotency.decide(earlier, key=key, process_id=process_id, header=header,
                                          now_ms=now, ttl_ms=self.ttl_ms).job_id is not None:
                        return earlier
                    verdict = decide(self._quota(tenant_id), self._usage(tenant_id, now), input_bytes,
                                     now, self.quota_settings.concurrent_retry_after_s)
                    if not verdict.allowed:
                        raise QuotaExceeded(verdict)
                    self._pending[index] = threading.Event()
                    self._in_flight[tenant_id] = self._in_flight.get(tenant_id, 0) + 1
                    return None
            twin.wait(self.writer.timeout_s * 4)

    def _release(self, index: str, tenant_id: str) -> None:
        with self._submit_lock:
            self._pending.pop(index).set()
            self._in_flight[tenant_id] -= 1
            if not self._in_flight[tenant_id]:
                del self._in_flight[tenant_id]

    def _discard(self, staged: str) -> None:
        """A submission that failed leaves no object behind; if even the delete fails, the
        expiry sweep (or the bucket's lifecycle rule) removes it with the other old inputs."""
        try:
            self.objects.delete(staged)
        except Exception as exc:
            log.warning("staged inputs of a failed submission not deleted; they expire",
                        key=staged, error=str(exc))

    def _quota(self, tenant_id: str) -> Quota:
        """The tenant's quota, its input limit never above the install's (GEOFLUX_JOBS_MAX_INPUT_BYTES,
        which the API's body limit is sized for)."""
        q = quota_for(self.quotas, tenant_id)
        limit = self.s.max_input_bytes if q.max_input_bytes is None else min(q.max_input_bytes,
                                                                           self.s.max_input_bytes)
        return replace(q, max_input_bytes=limit)

    def _usage(self, tenant_id: str, now: int) -> dict:
        active, recent = self.view.usage(tenant_id, now)
        writing = self._in_flight.get(tenant_id, 0)  # counted here until the view has them
        return usage(active + writing, recent + [now] * writing, now)

    def dismiss(self, job_id: str, tenant_id: str | None = None) -> dict:
        st = self.get(job_id, tenant_id)
        if st["status"] in FINAL:
            return st
        now = int(time.time() * 1000)
        marker = {"kind": "dismiss", "id": job_id, "tenant_id": st["tenant_id"], "version": 1,
                  "body": json.dumps({"at_ms": now}), "updated_ms": now, "deleted": False}
        records = [(self.t_control, self.codec.encode(self.t_control, "ConfigRecord", marker), job_id)]
        done = None
        if st["status"] == "accepted":  # not running anywhere yet: dismissed now
            done = dict(st, status="dismissed", message="dismissed before it started",
                        finished_ms=now, updated_ms=now)
            records.append((self.t_status, self.codec.encode(self.t_status, "JobStatus", done), job_id))
        self.writer.write(records)
        if done is not None:
            self.view.record_own(done, replacing="accepted")
        return self.get(job_id)
