"""`geoflux demo`: simulated vehicles driving loops through a handful of sample geofences
around Berlin's centre, published to `geo.locations` like any real producer would."""

from __future__ import annotations

import math
import random
import signal
import time

import structlog

from connectors.kafka_producer import ReliableProducer
from geoflux.keys import scoped
from geoflux.settings import GeofenceSettings, KafkaSettings
from schemas.catalogue import topic
from schemas.codec import AvroCodec
from services.geofence_registry import GeofenceRegistry, NotFound

log = structlog.get_logger("geoflux.demo")
TENANT = "demo"
CENTRE = (13.405, 52.52)


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


def run_demo(kafka: KafkaSettings, geo: GeofenceSettings, codec: AvroCodec, vehicles: int,
             interval_s: float, duration_s: float = 0.0) -> int:
    registry = GeofenceRegistry(kafka, geo, codec)
    registry.start()
    ensure_sample_fences(registry)
    registry.close()
    rnd = random.Random(42)
    routes = {f"vehicle-{i:03d}": _route(rnd) for i in range(vehicles)}
    progress = {v: rnd.uniform(0, 12) for v in routes}
    speed = {v: rnd.uniform(0.05, 0.2) for v in routes}  # waypoints per report
    producer = ReliableProducer(kafka)
    t = topic("geo.locations", kafka)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    sent, start = 0, time.monotonic()
    try:
        while not stopping and (not duration_s or time.monotonic() - start < duration_s):
            now = int(time.time() * 1000)
            for v, route in routes.items():
                progress[v] = (progress[v] + speed[v]) % len(route)
                k, frac = int(progress[v]), progress[v] % 1
                (x0, y0), (x1, y1) = route[k], route[(k + 1) % len(route)]
                rec = {"entity_id": v, "tenant_id": TENANT, "lon": x0 + (x1 - x0) * frac,
                       "lat": y0 + (y1 - y0) * frac, "ts_ms": now, "attributes": {"kind": "truck"},
                       "produced_ms": now}
                producer.send(t, codec.encode(t, "LocationUpdate", rec), key=scoped(TENANT, v))
            sent += producer.flush_or_raise()
            time.sleep(interval_s)  # the feed's pace: one report per vehicle per interval
    except KeyboardInterrupt:
        pass
    log.info("demo stopped", sent=sent)
    return sent
