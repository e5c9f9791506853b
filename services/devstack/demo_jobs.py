"""The demo's sample geoprocessing job, submitted once a minute for the `demo` tenant through
the jobs service (the same path as the OGC API): how many vehicles are in each demo polygon
right now (point-in-polygon, small: the in-process tier), and every fifth time the geodesic
area of a 6,000-vertex ring around the airport (large: the PostGIS tier when the job worker has
one). A submission that fails — the broker away, a quota — is logged and tried next minute.
"""

from __future__ import annotations

import math

import structlog

from geoflux.settings import JobSettings, KafkaSettings
from schemas.codec import AvroCodec

log = structlog.get_logger("geoflux.demo")
TENANT = "demo"
LARGE_VERTICES = 6000  # over GEOFLUX_JOBS_POSTGIS_THRESHOLD_VERTICES' default (5000)


def _ring(lon: float, lat: float, r_deg: float, n: int) -> dict:
    ring = [[lon + 1.6 * r_deg * math.cos(2 * math.pi * k / n), lat + r_deg * math.sin(2 * math.pi * k / n)]
            for k in range(n)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def sample_job(n: int, positions: dict[str, tuple[float, float]],
               polygons: list[tuple[str, dict]]) -> tuple[str, dict]:
    """The n-th sample: (process id, inputs). Inputs differ each time (positions move, the
    ring's radius steps), so the jobs service's idempotency does not fold them into one job."""
    if n % 5 == 4:
        return "area-length", {"geometry": _ring(13.44, 52.53, 0.006 + 0.0001 * (n % 50), LARGE_VERTICES)}
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"entity_id": v},
         "geometry": {"type": "Point", "coordinates": [lon, lat]}} for v, (lon, lat) in sorted(positions.items())]}
    fences = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": gid}, "geometry": geometry} for gid, geometry in polygons]}
    return "point-in-polygon", {"points": points, "polygons": fences}


class SampleJobs:
    def __init__(self, kafka: KafkaSettings, codec: AvroCodec, polygons: list[tuple[str, dict]],
                 every_s: float = 60.0) -> None:
        self.kafka, self.codec, self.polygons, self.every_s = kafka, codec, polygons, every_s
        self.svc = None
        self.n, self.next_at = 0, 0.0

    def tick(self, now: float, positions: dict[str, tuple[float, float]]) -> None:
        if now < self.next_at:
            return
        self.next_at = now + self.every_s
        process, inputs = sample_job(self.n, positions, self.polygons)
        self.n += 1
        try:
            if self.svc is None:
                from services.control.jobs import JobsService

                self.svc = JobsService(self.kafka, self.codec, JobSettings()).start()
            status, _created = self.svc.submit(process, inputs, tenant_id=TENANT, priority=3)
            log.info("sample job submitted", job_id=status["job_id"], process=process)
        except Exception as exc:  # the broker away, a quota: the next minute tries again
            log.warning("sample job not submitted", process=process, error=str(exc).splitlines()[0][:200])
            self.close()

    def close(self) -> None:
        if self.svc is not None:
            try:
                self.svc.close()
            except Exception:  # closing a half-started service: nothing more to do
                pass
            self.svc = None
