"""OGC API - Processes, Part 1 Core: /processes, /processes/{id}/execution, /jobs."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from functools import partial

from aiohttp import web

from geoflux.errors import TransientError, ValidationError
from services.api import routes_batch
from services.api.auth import check_visible, principal, tenant_filter, write_tenant
from services.control.job_writer import RecordTooLarge
from geoflux.errors import QuotaExceeded, ResultsGone
from services.control.jobs import FINAL, JobsService, NoSuchJob
from services.api.problems import json_body, page, problem
from streams.jobs.idempotency import IdempotencyConflict
from streams.jobs.processes import PROCESSES

JOBS = web.AppKey("jobs_service", JobsService)
EXC = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def status_info(st: dict) -> dict:
    links = [{"href": f"/jobs/{st['job_id']}", "rel": "self", "type": "application/json"}]
    if st["status"] == "successful":
        links.append({"href": f"/jobs/{st['job_id']}/results", "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                      "type": "application/json"})
    return {"jobID": st["job_id"], "processID": st["process_id"], "type": "process",
            "status": st["status"], "message": st["message"], "progress": st["progress"],
            "created": _iso(st["created_ms"]), "started": _iso(st["started_ms"]),
            "finished": _iso(st["finished_ms"]), "updated": _iso(st["updated_ms"]),
            "tier": st["tier"], "attempt": st["attempt"], "priority": st["priority"], "links": links}


def _ogc_problem(status: int, kind: str, detail: str) -> web.Response:
    return problem(status, kind.replace("-", " ").capitalize(), detail, EXC + kind)


async def list_processes(request: web.Request) -> web.Response:
    return web.json_response({"processes": [p.summary() for p in PROCESSES.values()],
                              "links": [{"href": "/processes", "rel": "self", "type": "application/json"}]})


async def describe_process(request: web.Request) -> web.Response:
    p = PROCESSES.get(request.match_info["id"])
    if p is None:
        return _ogc_problem(404, "no-such-process", f"no process {request.match_info['id']!r}")
    return web.json_response(p.describe())


async def execute(request: web.Request) -> web.Response:
    svc = request.app[JOBS]
    pid = request.match_info["id"]
    if pid not in PROCESSES:
        return _ogc_problem(404, "no-such-process", f"no process {pid!r}")
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        return problem(400, "Bad Request", 'expected an execute request: {"inputs": {...}}')
    prefer_async = "respond-async" in request.headers.get("Prefer", "")
    try:
        st, created = await asyncio.get_running_loop().run_in_executor(svc.submissions, partial(
            svc.submit, pid, body["inputs"],
            tenant_id=write_tenant(request, request.headers.get("X-Geoflux-Tenant")) or "default",
            priority=body.get("priority", 5), subscriber=body.get("subscriber"),
            timeout_s=body.get("timeout_s"), idempotency_header=request.headers.get("Idempotency-Key")))
    except IdempotencyConflict as exc:  # a key names one request (Stripe's semantics)
        return problem(422, "Unprocessable Content", str(exc), "urn:geoflux:problem:idempotency-key-reused")
    except ValidationError as exc:  # OGC: invalid inputs are a 400
        return problem(400, "Bad Request", str(exc), EXC + "invalid-parameter-value")
    except QuotaExceeded as exc:
        return quota_problem(exc)
    except RecordTooLarge as exc:
        return problem(413, "Payload Too Large", str(exc), "urn:geoflux:problem:record-too-large")
    except TransientError as exc:  # nothing was written: the same request may simply be sent again
        resp = problem(503, "Service Unavailable", f"job not accepted: {exc}",
                       "urn:geoflux:problem:not-accepted")
        resp.headers["Retry-After"] = "5"
        return resp
    location = {"Location": f"/jobs/{st['job_id']}"}
    if not prefer_async and svc.small(pid, body["inputs"]):
        done = await svc.wait(st["job_id"], svc.s.sync_wait_s)
        if done["status"] == "successful":
            try:
                return web.json_response(await asyncio.to_thread(svc.result, st["job_id"]),
                                         headers=location)
            except ResultsGone as exc:  # a reused job older than its results
                return problem(410, "Results expired", str(exc), "urn:geoflux:problem:results-expired")
        if done["status"] in FINAL:
            return problem(500, "Job failed", done["message"] or done["status"], EXC + "job-failed")
    headers = {**location, "Preference-Applied": "respond-async"} if prefer_async else location
    return web.json_response(status_info(svc.get(st["job_id"])), status=201 if created else 200,
                             headers=headers)


def quota_problem(exc: QuotaExceeded) -> web.Response:
    d = exc.decision
    title = "Too Many Requests" if d.status == 429 else "Payload Too Large"
    resp = problem(d.status, title, d.reason or "quota exceeded", "urn:geoflux:problem:quota-exceeded",
                   rule=d.rule, retry_after_s=d.retry_after_s)
    if d.retry_after_s is not None:
        resp.headers["Retry-After"] = str(d.retry_after_s)
    return resp


async def tenant_quotas(request: web.Request) -> web.Response:
    """A tenant's job quotas and usage. A tenant key sees only its own tenant (another
    tenant's is 404, as for any object of another tenant); operators see any."""
    tenant = request.match_info["id"]
    check_visible(request, tenant, f"tenant {tenant!r}")
    return web.json_response(request.app[JOBS].quota(tenant))


async def list_jobs(request: web.Request) -> web.Response:
    svc = request.app[JOBS]
    offset, limit = page(request)
    items, total = await asyncio.to_thread(svc.page, tenant_filter(request), request.query.get("status"),
                                           request.query.get("processID"), offset, limit)
    body = {"jobs": [status_info(s) for s in items], "total": total,
            "links": [{"href": f"/jobs?offset={offset}&limit={limit}", "rel": "self"}]}
    if offset + limit < total:
        body["links"].append({"href": f"/jobs?offset={offset + limit}&limit={limit}", "rel": "next"})
    return web.json_response(body)


async def get_job(request: web.Request) -> web.Response:
    try:
        return web.json_response(status_info(request.app[JOBS].get(request.match_info["id"],
                                                                   principal(request).tenant)))
    except NoSuchJob as exc:
        return _ogc_problem(404, "no-such-job", str(exc))


async def job_results(request: web.Request) -> web.Response:
    svc = request.app[JOBS]
    try:
        st = svc.get(request.match_info["id"], principal(request).tenant)
        if st["status"] == "successful":
            return web.json_response(await asyncio.to_thread(svc.result, st["job_id"]))
    except NoSuchJob as exc:
        return _ogc_problem(404, "no-such-job", str(exc))
    except ResultsGone as exc:
        return problem(410, "Results expired", str(exc), "urn:geoflux:problem:results-expired")
    if st["status"] == "failed":
        return problem(500, "Job failed", st["message"] or "failed", EXC + "job-failed")
    if st["status"] == "dismissed":
        return problem(410, "Job dismissed", st["message"] or "dismissed", EXC + "job-dismissed")
    return _ogc_problem(404, "result-not-ready", f"job {st['job_id']} is {st['status']} ({st['progress']}%)")


async def dismiss(request: web.Request) -> web.Response:
    try:
        st = await asyncio.to_thread(request.app[JOBS].dismiss, request.match_info["id"],
                                     principal(request).tenant)
    except NoSuchJob as exc:
        return _ogc_problem(404, "no-such-job", str(exc))
    return web.json_response(status_info(st))


def add_routes(app: web.Application, svc: JobsService) -> None:
    app[JOBS] = svc
    app.router.add_get("/processes", list_processes)
    app.router.add_get("/processes/{id}", describe_process)
    app.router.add_post("/processes/{id}/execution", execute)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_get("/jobs/{id}/results", job_results)
    app.router.add_delete("/jobs/{id}", dismiss)
    app.router.add_get("/api/v1/tenants/{id}/quotas", tenant_quotas)
    routes_batch.add_routes(app, svc)  # AWS Batch completions by SNS (signed, no API key)
