"""`geoflux demo`: simulated vehicles driving loops through a handful of sample geofences
around Berlin's centre, published to `geo.locations` like any real producer would; the demo
tenant's alert rules, inbox channel, silence and CEP patterns (services/devstack/demo_config.py); a
sample geoprocessing job a minute (services/devstack/demo_jobs.py); and one vehicle with a faulty GPS
whose out-of-range fix every `FAULT_EVERY_S` lands in the locations dead-letter queue.

A broker outage does not end the feed: it waits for the broker with its own backoff (1 s to
30 s), saying so in its log, and goes on where it was. Positions the broker never acknowledged
within the producer's delivery timeout are counted and logged, not resent: the next report of
the same vehicle supersedes them."""

from __future__ import annotations

import math
import random
import signal
import time

import structlog

from connectors.kafka_producer import ReliableProducer
from geoflux.errors import TransientError, ValidationError
from geoflux.keys import scoped
from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.devstack.demo_config import ensure_demo_config
from services.devstack.demo_jobs import SampleJobs
from geoflux.errors import NotFound
from services.control.geofence_registry import GeofenceRegistry

log = structlog.get_logger("geoflux.demo")
TENANT = "demo"
CENTRE = (13.405, 52.52)
FAULT_EVERY_S = 30.0


def _box(lon: float, lat: float, dx: float, dy: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + dx, lat], [lon + dx, lat + dy],
                                                [lon, lat + dy], [lon, lat]]]}


SAMPLE_FENCES = [
    ("demo-depot", "Depot", _box(13.37, 52.50, 0.02, 0.012), {"dwell_seconds": 20}),
    ("demo-restricted", "Restricted zone", _box(13.40, 52.515, 0.015, 0.01), {}),
    ("demo-airport", "Airport apron", {"type": "Point", "coordinates": [13.44, 52.53]},
     {"radius_m": 900}),
    ("demo-market", "Market square", {"type": "Point", "coordinates": [13.39, 52.535]},
     {"radius_m": 500, "dwell_seconds": 30}),
    ("demo-bridge", "Bridge", _box(13.415, 52.505, 0.006, 0.004), {"hysteresis_m": 20}),
]


def ensure_sample_fences(registry: GeofenceRegistry) -> None:
    missing = []
    for gid, name, geometry, props in SAMPLE_FENCES:
        try:
            registry.get(gid, TENANT)
        except NotFound:
            missing.append(({"type": "Feature", "geometry": geometry,
                              "properties": {"name": name, "tenant_id": TENANT, **props}}, gid))
    if missing:
        registry.put_many(missing)


def _route(rnd: random.Random) -> list[tuple[float, float]]:
    """A loop of waypoints around the centre that crosses several sample fences."""
    r = rnd.uniform(0.01, 0.04)
    phase = rnd.uniform(0, 2 * math.pi)
    return [(CENTRE[0] + r * 1.6 * math.cos(phase + k * math.pi / 6),
             CENTRE[1] + r * math.sin(phase + k * math.pi / 6)) for k in range(12)]


WAIT_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # between tries while the broker is away; the last repeats


def _waiting(attempt: int, what: str, exc: Exception, stopping: list) -> None:
    delay = WAIT_S[min(attempt, len(WAIT_S) - 1)]
    log.warning("waiting for the broker", what=what, error=str(exc).splitlines()[0][:200],
                retry_in_s=delay, attempt=attempt + 1)
    deadline = time.monotonic() + delay
    while not stopping and time.monotonic() < deadline:
        time.sleep(0.2)


def _with_broker(what: str, setup, stopping: list) -> None:
    """Runs `setup()` until it succeeds, waiting out a broker that is away or not ready."""
    attempt = 0
    while not stopping:
        try:
            setup()
            return
        except ValidationError:
            raise  # our own objects refused: no wait makes them valid
        except Exception as exc:  # the broker away or not ready (librdkafka's or ours): wait
            _waiting(attempt, what, exc, stopping)
            attempt += 1


def _setup_fences(kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec) -> None:
    registry = GeofenceRegistry(kafka, geo, codec)
    try:
        registry.start()
        ensure_sample_fences(registry)
    finally:
        try:
            registry.close()
        except Exception:  # a registry that never started has nothing to close
            pass


def _flush(producer: ReliableProducer, stopping: list) -> int:
    """Every queued position acknowledged (the count), waiting out a broker outage."""
    delivered, attempt = 0, 0
    while True:
        try:
            return delivered + producer.flush_or_raise(5.0)
        except TransientError as exc:
            if stopping:
                return delivered
            if "not acknowledged" in str(exc):  # timed out in the producer: dropped, said so
                log.warning("positions dropped: not acknowledged within the delivery timeout",
                            error=str(exc)[:200])
                return delivered
            _waiting(attempt, "positions", exc, stopping)
            attempt += 1


def run_demo(kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec, vehicles: int,
             interval_s: float, duration_s: float = 0.0, feed_only: bool = False) -> int:
    stopping: list = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    _with_broker("sample geofences", lambda: _setup_fences(kafka, geo, codec), stopping)
    if not feed_only:
        _with_broker("demo configuration", lambda: log.info(
            "demo configuration", written=ensure_demo_config(kafka, codec)), stopping)
    jobs = None if feed_only else SampleJobs(
        kafka, codec, [(gid, g) for gid, _n, g, _p in SAMPLE_FENCES if g["type"] == "Polygon"])
    rnd = random.Random(42)
    routes = {f"vehicle-{i:03d}": _route(rnd) for i in range(vehicles)}
    progress = {v: rnd.uniform(0, 12) for v in routes}
    speed = {v: rnd.uniform(0.05, 0.2) for v in routes}  # waypoints per report
    producer = ReliableProducer(kafka)
    t = topic("geo.locations", kafka)
    sent, start, next_fault = 0, time.monotonic(), time.monotonic()
    positions: dict[str, tuple[float, float]] = {}
    try:
        while not stopping and (not duration_s or time.monotonic() - start < duration_s):
            now = int(time.time() * 1000)
            if not feed_only and time.monotonic() >= next_fault:  # valid Avro, impossible place
                next_fault = time.monotonic() + FAULT_EVERY_S
                fault = {"entity_id": "gps-fault-1", "tenant_id": TENANT, "lon": 13.4, "lat": 95.0,
                         "ts_ms": now, "attributes": {"kind": "truck"}, "produced_ms": now}
                producer.send(t, codec.encode(t, "LocationUpdate", fault), key=scoped(TENANT, "gps-fault-1"))
            for v, route in routes.items():
                progress[v] = (progress[v] + speed[v]) % len(route)
                k, frac = int(progress[v]), progress[v] % 1
                (x0, y0), (x1, y1) = route[k], route[(k + 1) % len(route)]
                rec = {"entity_id": v, "tenant_id": TENANT, "lon": x0 + (x1 - x0) * frac,
                       "lat": y0 + (y1 - y0) * frac, "ts_ms": now, "attributes": {"kind": "truck"},
                       "produced_ms": now}
                producer.send(t, codec.encode(t, "LocationUpdate", rec), key=scoped(TENANT, v))
                positions[v] = (rec["lon"], rec["lat"])
            sent += _flush(producer, stopping)
            if jobs is not None:
                jobs.tick(time.monotonic(), positions)
            time.sleep(interval_s)  # the feed's pace: one report per vehicle per interval
    except KeyboardInterrupt:
        pass
    finally:
        if jobs is not None:
            jobs.close()
    log.info("demo stopped", sent=sent)
    return sent
