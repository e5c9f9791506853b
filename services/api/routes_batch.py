"""POST /api/v1/webhooks/batch-sns: AWS Batch state changes, delivered by SNS.

The usual wiring is an EventBridge rule on "Batch Job State Change" (source aws.batch) whose
target is an SNS topic with this endpoint subscribed over HTTPS. No API key: the message is
authenticated by its SNS signature (connectors/compute/sns_signature.py) against a
certificate fetched only from a URL matching `GEOFLUX_BATCH_SNS_CERT_URL_PATTERN`.
A verified state change of a geoflux job is written to `jobs.batch`, where the job worker
running that job picks it up; anything unverified is 403 and goes nowhere.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import structlog
from aiohttp import web

from connectors.compute import batch_policy as bp
from connectors.compute.sns_signature import cert_url_allowed, verify
from geoflux.errors import BadSignature
from geoflux.settings import BatchSettings
from schemas.catalogue import topic
from services.control.jobs import JobsService
from services.api.problems import problem

log = structlog.get_logger("geoflux.batch-sns")
BATCH = web.AppKey("batch_settings", BatchSettings)
CERTS = web.AppKey("sns_certs", dict)
SVC = web.AppKey("jobs_for_batch", JobsService)


async def _cert(request: web.Request, url: str) -> bytes:
    cache = request.app[CERTS]
    if url not in cache:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise BadSignature(f"signing certificate fetch: HTTP {resp.status}")
                cache[url] = await resp.read()
    return cache[url]


async def batch_sns(request: web.Request) -> web.Response:
    s: BatchSettings = request.app[BATCH]
    try:
        msg = json.loads(await request.read())
        if not isinstance(msg, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return problem(400, "Bad Request", f"not an SNS message: {exc}")
    try:
        if s.sns_topic_arns and msg.get("TopicArn") not in s.sns_topic_arns:
            raise BadSignature(f"topic {msg.get('TopicArn')!r} is not accepted")
        url = msg.get("SigningCertURL") or ""
        if not cert_url_allowed(url, s.sns_cert_url_pattern):
            raise BadSignature(f"SigningCertURL {url!r} is not an SNS certificate URL")
        verify(msg, await _cert(request, url), max_age_s=s.sns_max_age_s)
    except (BadSignature, aiohttp.ClientError) as exc:
        log.warning("SNS message refused", error=str(exc), topic=msg.get("TopicArn"))
        return problem(403, "Forbidden", str(exc))
    if msg["Type"] == "SubscriptionConfirmation":
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(msg["SubscribeURL"]) as resp:
                return web.json_response({"confirmed": resp.status == 200}, status=200)
    if msg["Type"] != "Notification":
        return web.json_response({"ignored": msg["Type"]})
    try:
        detail = bp.state_change_detail(json.loads(msg["Message"]))
    except ValueError:
        detail = None
    job_id = bp.job_id_from_name(detail.get("jobName", "")) if detail else None
    if job_id is None:
        return web.json_response({"ignored": "not a Batch job state change of a geoflux job"})
    state = bp.read_job(detail)
    svc = request.app[SVC]
    t = topic("jobs.batch", svc.kafka)
    rec = {"job_id": job_id, "batch_job_id": state.batch_job_id, "job_name": state.job_name,
           "status": state.status, "status_reason": state.reason, "exit_code": state.exit_code,
           "image": state.image, "log_stream": state.log_stream, "attempts": state.attempts,
           "source": "sns", "updated_ms": int(time.time() * 1000)}
    await asyncio.to_thread(svc.producer.deliver, [(t, svc.codec.encode(t, "BatchEvent", rec), job_id)])
    return web.json_response({"job_id": job_id, "status": state.status})


def add_routes(app: web.Application, svc: JobsService, settings: BatchSettings | None = None) -> None:
    app[BATCH] = settings or BatchSettings()
    app[CERTS] = {}
    app[SVC] = svc
    app.router.add_post("/api/v1/webhooks/batch-sns", batch_sns)
