"""The HTTP API (aiohttp): geofences, REST evaluation, health. Later issues add routes here."""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import signal

import structlog
from aiohttp import web

from connectors.kafka_producer import ReliableProducer
from connectors.topic_reader import TopicReader
from geoflux.settings import (AlertSettings, ApiSettings, GeofenceSettings, JobSettings,
                              KafkaSettings, PostgresSettings, StreamSettings)
from schemas.codec import AvroCodec
from services.api import (gateway, routes_alerts, routes_audit, routes_cep, routes_console,
                          routes_entities, routes_geoevent, routes_geofences, routes_inbox,
                          routes_processes, routes_stack, routes_twilio, stream_tickets)
from services.api.async_producer import AsyncProducer
from services.api.auth import auth_middleware, load_api_keys
from services.api.stream_tickets import TicketBook
from services.api.evaluation_waiter import EvaluationWaiter
from services.control.geofence_registry import GeofenceRegistry
from services.api.health import readiness
from services.control.jobs import JobsService, body_limit
from services.metrics import PrometheusStageSensor
from services.api.views import AttributesView, MembershipView
from services.api.problems import problem, problem_middleware

SETTINGS = web.AppKey("kafka_settings", KafkaSettings)
log = structlog.get_logger("geoflux.api")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await readiness(request.app[SETTINGS])  # broker; registry and database if configured
    failed = [f"{name} at {c['target']}: {c['error']}" for name, c in checks.items() if not c["ok"]]
    if failed:
        return problem(503, "Service Unavailable", "; ".join(failed), checks=checks)
    return web.json_response({"status": "ready", "kafka": request.app[SETTINGS].bootstrap,
                              "checks": checks})


def create_app(kafka: KafkaSettings, geo: GeofenceSettings, api: ApiSettings,
               codec: AvroCodec, instance: int = 0) -> web.Application:
    TopicReader.default_on_skip = PrometheusStageSensor().skipped  # every view this process follows
    keys = load_api_keys(api.keys, api.keys_file)
    if not keys:
        log.warning("no API keys configured: every request will be refused (set GEOFLUX_API_KEYS)")
    tickets = TicketBook()  # single-use WebSocket tickets for browsers (no key in a URL)
    app = web.Application(middlewares=[problem_middleware, auth_middleware(keys, tickets)],
                          client_max_size=body_limit(JobSettings()))
    app[SETTINGS] = kafka
    producer = ReliableProducer(kafka)
    registry = GeofenceRegistry(kafka, geo, codec, producer)
    registry.start()
    waiter = EvaluationWaiter(kafka, codec)
    app[routes_geofences.REGISTRY] = registry
    routes_geofences.add_routes(app)
    evaluate_producer = AsyncProducer(kafka)  # the evaluate path's: acks as futures, no thread per request
    routes_geoevent.add_routes(app, kafka, api, codec, evaluate_producer, waiter)
    closeables = routes_alerts.add_routes(app, kafka, codec, producer, AlertSettings().rules_file)
    routes_twilio.add_routes(app, api.public_url)  # voice channels' keypress acknowledgements
    jobs = JobsService(kafka, codec, JobSettings(), producer).start()
    routes_processes.add_routes(app, jobs)
    closeables.append(jobs)
    closeables += routes_cep.add_routes(app, kafka, codec, producer)
    routes_audit.add_routes(app, PostgresSettings().dsn)  # the audit trail in PostgreSQL
    gateway.add_routes(app, kafka, codec)
    stream_tickets.add_routes(app, tickets)
    closeables += routes_console.add_routes(app, kafka, codec)  # /console and /api/v1/entities
    # occupancy and entity attributes: local views, one store per API process
    state, name = StreamSettings(), f"api-{api.port}" + (f"-{instance}" if instance else "")
    closeables += routes_entities.add_routes(app, MembershipView(kafka, codec, state, name),
                                             AttributesView(kafka, codec, state, name), codec, producer)
    from services.api import routes_replay  # replay by time or offset, NDJSON
    routes_replay.add_routes(app, kafka, codec)
    routes_stack.add_routes(app)  # /api/v1/stack: the parts of the `geoflux up` that started us
    routes_inbox.add_routes(app)  # /api/v1/inbox: what `inbox` channels received
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    # the API definition and OGC discovery; every route above is described in openapi_paths.py
    from services.api import openapi, openapi_paths, routes_ogc
    openapi.add_routes(app, openapi_paths.OPERATIONS)
    routes_ogc.add_routes(app, openapi_paths.OPERATIONS)

    async def on_cleanup(_app):
        for c in (registry, waiter, evaluate_producer, *closeables):
            c.close()

    app.on_cleanup.append(on_cleanup)
    return app


def serve(kafka: KafkaSettings, geo: GeofenceSettings, api: ApiSettings, codec: AvroCodec) -> None:
    if api.workers <= 1:
        web.run_app(create_app(kafka, geo, api, codec), host=api.host, port=api.port,
                    print=None, access_log=None)
        return
    # several processes on one port (SO_REUSEPORT): the kernel spreads connections over them;
    # each has its own producer, reply matcher (replies are matched by key in the process that
    # asked) and views. Spawned, not forked: no librdkafka thread is copied half-way.
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_serve_one, args=(kafka, geo, api, codec, i), name=f"api-{i}")
             for i in range(api.workers)]
    for p in procs:
        p.start()
    signalled: list[int] = []

    def stop(signum: int | None = None, _frame=None) -> None:
        if signum is not None:
            signalled.append(signum)
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: each runs its cleanup

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # one process gone is the API degraded: stop the rest so the supervisor restarts it whole
    mp.connection.wait([p.sentinel for p in procs])
    stop()
    for p in procs:
        p.join(30)
    if not signalled or any(p.exitcode not in (0, -signal.SIGTERM) for p in procs):
        raise SystemExit(1)


def _serve_one(kafka: KafkaSettings, geo: GeofenceSettings, api: ApiSettings, codec: AvroCodec,
               instance: int) -> None:
    from services.logging import configure_logging

    configure_logging()
    web.run_app(create_app(kafka, geo, api, codec, instance), host=api.host, port=api.port,
                reuse_port=True, print=None, access_log=None)
