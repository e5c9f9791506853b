"""Jobs as the API and CLI see them: submit with idempotency, status, results, dismissal."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.errors import GeofluxError, ValidationError
from geoflux.settings import JobSettings, KafkaSettings, QuotaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.geofence_registry import NotFound
from streams.jobs import idempotency
from streams.jobs.processes import PROCESSES, input_size, validate_inputs
from streams.jobs.quotas import Decision, decide, parse_quotas, quota_for, usage

FINAL = ("successful", "failed", "dismissed")


class NoSuchProcess(NotFound):
    error_class = "no-such-process"


class NoSuchJob(NotFound):
    error_class = "no-such-job"


class QuotaExceeded(GeofluxError):
    error_class = "quota-exceeded"

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason or "quota exceeded", reason=decision.rule)
        self.decision = decision


class JobsService:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, settings: JobSettings,
                 producer: ReliableProducer | None = None, quotas: QuotaSettings | None = None) -> None:
        self.kafka, self.codec, self.s = kafka, codec, settings
        self.quota_settings = quotas or QuotaSettings()
        self.quotas = parse_quotas(self.quota_settings.tenants)
        self.producer = producer or ReliableProducer(kafka)
        self.t_requests = topic("jobs.requests", kafka)
        self.t_status = topic("jobs.status", kafka)
        self.t_control = topic("jobs.control", kafka)
        self.statuses: dict[str, dict] = {}
        self.results: dict[str, dict] = {}
        self.by_key: dict[str, str] = {}
        self._submit_lock = threading.Lock()
        self._status_reader = TopicReader(kafka, self.t_status, "JobStatus", codec, self._apply_status)
        self._results_reader = TopicReader(kafka, topic("jobs.results", kafka), "JobResult", codec,
                                           self._apply_result)

    def start(self) -> "JobsService":
        self._status_reader.load().follow()
        self._results_reader.load().follow()
        return self

    def close(self) -> None:
        self._status_reader.close()
        self._results_reader.close()

    def _apply_status(self, job_id: str, rec: dict | None, _msg) -> bool:
        if rec is not None:
            self.statuses[job_id] = rec
            if rec["idempotency_key"]:
                index = idempotency.index_key(rec["tenant_id"], rec["idempotency_header"],
                                              rec["idempotency_key"])
                indexed = self.statuses.get(self.by_key.get(index, ""))
                # partitions are read in any interleaving: the newest job of a key wins
                if indexed is None or indexed["created_ms"] <= rec["created_ms"]:
                    self.by_key[index] = job_id
        return rec is not None

    def _apply_result(self, job_id: str, rec: dict | None, _msg) -> bool:
        if rec is not None:
            self.results[job_id] = rec
        return rec is not None

    # -- reads --------------------------------------------------------------------------------
    def get(self, job_id: str, tenant_id: str | None = None) -> dict:
        with self._status_reader.lock:
            st = self.statuses.get(job_id)
        if st is None or (tenant_id is not None and st["tenant_id"] != tenant_id):
            raise NoSuchJob(f"no job {job_id}")
        return st

    def list(self, tenant_id: str | None = None, status: str | None = None,
             process_id: str | None = None) -> list[dict]:
        with self._status_reader.lock:
            items = list(self.statuses.values())
        return sorted((s for s in items if (tenant_id is None or s["tenant_id"] == tenant_id)
                       and (status is None or s["status"] == status)
                       and (process_id is None or s["process_id"] == process_id)),
                      key=lambda s: s["created_ms"], reverse=True)

    def result(self, job_id: str) -> dict | None:
        with self._results_reader.lock:
            rec = self.results.get(job_id)
        return json.loads(rec["outputs"]) if rec else None

    async def wait(self, job_id: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            st = self.get(job_id)
            if st["status"] in FINAL and (st["status"] != "successful" or self.result(job_id) is not None):
                return st
            if time.monotonic() > deadline:
                return st
            await asyncio.sleep(0.05)  # polling the followed status view

    def quota(self, tenant_id: str) -> dict:
        """A tenant's limits and what it uses now (GET /api/v1/tenants/{id}/quotas)."""
        now = int(time.time() * 1000)
        with self._status_reader.lock:
            use = usage(list(self.statuses.values()), tenant_id, now)
        return {"tenant_id": tenant_id, "limits": quota_for(self.quotas, tenant_id).to_json(),
                "usage": {k: v for k, v in use.items() if k != "oldest_recent_ms"}}

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
        validate_inputs(process, inputs)
        if not isinstance(priority, int) or not 0 <= priority <= 9:
            raise ValidationError("priority must be an integer 0-9 (9 runs first)")
        subscriber = subscriber or {}
        if not isinstance(subscriber, dict) or not all(
                k in ("successUri", "inProgressUri", "failedUri") and isinstance(v, str)
                and v.startswith(("http://", "https://")) for k, v in subscriber.items()):
            raise ValidationError("subscriber takes successUri, inProgressUri, failedUri as http(s) URLs")
        if timeout_s is not None and not (self.s.min_timeout_s <= timeout_s <= self.s.max_timeout_s):
            raise ValidationError(f"timeout_s must be between {self.s.min_timeout_s:g} and "
                                  f"{self.s.max_timeout_s:g} seconds")
        header = idempotency.check_header(idempotency_header)
        key = idempotency.request_key(tenant_id, process_id, inputs, header)
        index = idempotency.index_key(tenant_id, header, key)
        ttl_ms = int(self.s.idempotency_ttl_days * 86_400_000)
        now = int(time.time() * 1000)
        with self._submit_lock:
            with self._status_reader.lock:
                earlier = self.statuses.get(self.by_key.get(index, ""))
            reuse = idempotency.decide(earlier, key=key, process_id=process_id, header=header,
                                       now_ms=now, ttl_ms=ttl_ms)
            if reuse.job_id is not None:
                return earlier, False
            raw_inputs = json.dumps(inputs)
            with self._status_reader.lock:  # usage from the followed status view (every instance)
                use = usage(list(self.statuses.values()), tenant_id, now)
            verdict = decide(quota_for(self.quotas, tenant_id), use, len(raw_inputs.encode()), now,
                             self.quota_settings.concurrent_retry_after_s)
            if not verdict.allowed:
                raise QuotaExceeded(verdict)
            job_id = str(uuid.uuid4())
            req = {"job_id": job_id, "idempotency_key": key, "tenant_id": tenant_id,
                   "process_id": process_id, "priority": priority, "inputs": raw_inputs,
                   "subscriber": subscriber, "attempt": 0, "timeout_s": timeout_s,
                   "created_ms": now, "not_before_ms": 0, "first_failure_ms": None,
                   "last_error": None, "idempotency_header": header}
            status = {"job_id": job_id, "tenant_id": tenant_id, "process_id": process_id,
                      "status": "accepted", "progress": 0, "message": "queued", "tier": None,
                      "attempt": 0, "created_ms": now, "started_ms": None, "finished_ms": None,
                      "updated_ms": now, "idempotency_key": key, "priority": priority,
                      "idempotency_header": header}
            # status first: a worker that finishes fast must not be overwritten by "accepted"
            self.producer.deliver([(self.t_status, self.codec.encode(self.t_status, "JobStatus", status), job_id)])
            self.producer.deliver([(self.t_requests, self.codec.encode(self.t_requests, "JobRequest", req), job_id)])
            with self._status_reader.lock:
                self.statuses.setdefault(job_id, status)
                self.by_key[index] = job_id
        return status, True

    def small(self, process_id: str, inputs: object) -> bool:
        return input_size(validate_inputs(PROCESSES[process_id], inputs)) <= self.s.sync_max_vertices

    def dismiss(self, job_id: str, tenant_id: str | None = None) -> dict:
        st = self.get(job_id, tenant_id)
        if st["status"] in FINAL:
            return st
        now = int(time.time() * 1000)
        marker = {"kind": "dismiss", "id": job_id, "tenant_id": st["tenant_id"], "version": 1,
                  "body": json.dumps({"at_ms": now}), "updated_ms": now, "deleted": False}
        records = [(self.t_control, self.codec.encode(self.t_control, "ConfigRecord", marker), job_id)]
        if st["status"] == "accepted":  # not running anywhere yet: dismissed now
            done = dict(st, status="dismissed", message="dismissed before it started",
                        finished_ms=now, updated_ms=now)
            records.append((self.t_status, self.codec.encode(self.t_status, "JobStatus", done), job_id))
            with self._status_reader.lock:
                self.statuses[job_id] = done
        self.producer.deliver(records)
        return self.get(job_id)
