"""The PostGIS tier: the same processes as ST_* SQL, one transaction per attempt.

Side effects happen once per idempotency key: the result row is written into
`geoflux_job_results` in the attempt's own transaction (ON CONFLICT DO NOTHING), and an
attempt first looks for a committed result of an earlier attempt and returns it. The
statement timeout is the job's; a dismissal cancels the running statement.

Errors: connection failures, SQLSTATE 08xxx, 40001, 40P01, 53300, 57P01-57P03 are transient;
everything else (bad data, GEOS errors) is permanent.
"""

from __future__ import annotations

import asyncio
import json
from typing import Callable

import psycopg
from psycopg.types.json import Jsonb

from connectors.compute.base import JobCancelled, JobContext, JobTimedOut
from geoflux.errors import PermanentError, TransientError, ValidationError

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE TABLE IF NOT EXISTS geoflux_job_results (
    idempotency_key text PRIMARY KEY,
    job_id text NOT NULL,
    process_id text NOT NULL,
    outputs jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""
TRANSIENT_STATES = {"40001", "40P01", "53300", "57P01", "57P02", "57P03", "55P03"}
G = "ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326)"


def _geojson(value) -> str:
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value["geometry"]
    if isinstance(value, dict) and value.get("type") == "FeatureCollection":
        return json.dumps({"type": "GeometryCollection",
                           "geometries": [f["geometry"] for f in value["features"]]})
    return json.dumps(value)


def _one(cur, sql: str, params) -> tuple:
    cur.execute(sql, params)
    return cur.fetchone()


def _buffer(cur, i: dict) -> dict:
    [g] = _one(cur, f"SELECT ST_AsGeoJSON(ST_Buffer(({G})::geography, %s, %s)::geometry)",
               (_geojson(i["geometry"]), i["distance_m"], f"quad_segs={int(i.get('segments') or 8)}"))
    return {"geometry": json.loads(g)}


def _intersection(cur, i: dict) -> dict:
    [g] = _one(cur, f"SELECT ST_AsGeoJSON(ST_Intersection({G}, {G}))",
               (_geojson(i["geometry"]), _geojson(i["clip"])))
    return {"geometry": json.loads(g)}


def _load_features(cur, table: str, fc: dict) -> None:
    cur.execute(f"CREATE TEMP TABLE {table} (n int, geom geometry, props jsonb) ON COMMIT DROP")
    cur.executemany(f"INSERT INTO {table} VALUES (%s, {G}, %s)",
                    [(n, json.dumps(f["geometry"]), json.dumps(f.get("properties") or {}))
                     for n, f in enumerate(fc["features"])])


def _union(cur, i: dict) -> dict:
    by = i.get("by")
    _load_features(cur, "u_in", i["features"])
    key = "coalesce(props->>%s, 'None')" if by else "'all'"
    cur.execute(f"SELECT {key} k, count(*), ST_AsGeoJSON(ST_Union(geom)) FROM u_in GROUP BY 1 ORDER BY 1",
                (by,) if by else None)
    feats = [{"type": "Feature", "properties": {by or "group": k, "count": c}, "geometry": json.loads(g)}
             for k, c, g in cur.fetchall()]
    return {"features": {"type": "FeatureCollection", "features": feats}}


def _simplify(cur, i: dict) -> dict:
    [g] = _one(cur, f"""WITH s AS (SELECT {G} g) SELECT ST_AsGeoJSON(ST_Transform(
        ST_SimplifyPreserveTopology(ST_Transform(g, _ST_BestSRID(g::geography)), %s), 4326)) FROM s""",
               (_geojson(i["geometry"]), i["tolerance_m"]))
    return {"geometry": json.loads(g)}


def _convex_hull(cur, i: dict) -> dict:
    [g] = _one(cur, f"SELECT ST_AsGeoJSON(ST_ConvexHull({G}))", (_geojson(i["geometry"]),))
    return {"geometry": json.loads(g)}


def _area_length(cur, i: dict) -> dict:
    area, perim, length = _one(cur, f"""WITH s AS (SELECT ({G})::geography g)
        SELECT ST_Area(g), ST_Perimeter(g), ST_Length(g) FROM s""", (_geojson(i["geometry"]),))
    return {"area_m2": area, "perimeter_m": perim, "length_m": length}


def _point_in_polygon(cur, i: dict) -> dict:
    id_prop = i.get("id_property") or "id"
    _load_features(cur, "p_pts", i["points"])
    _load_features(cur, "p_polys", i["polygons"])
    cur.execute("SELECT coalesce(props->>%s, n::text) FROM p_polys ORDER BY n", (id_prop,))
    counts = {r[0]: 0 for r in cur.fetchall()}
    cur.execute("""SELECT p.n, coalesce(array_agg(coalesce(g.props->>%s, g.n::text) ORDER BY g.n)
                   FILTER (WHERE g.n IS NOT NULL), '{}') FROM p_pts p
                   LEFT JOIN p_polys g ON ST_Covers(g.geom, p.geom) GROUP BY p.n ORDER BY p.n""",
                (id_prop,))
    joined = dict(cur.fetchall())
    feats = []
    for n, f in enumerate(i["points"]["features"]):
        for pid in joined.get(n, []):
            counts[pid] += 1
        feats.append({"type": "Feature", "geometry": f["geometry"],
                      "properties": {**(f.get("properties") or {}), "within": joined.get(n, [])}})
    return {"counts": counts, "points": {"type": "FeatureCollection", "features": feats}}


def _reproject(cur, i: dict) -> dict:
    src, dst = int(i.get("from_epsg") or 4326), int(i["to_epsg"])
    cur.execute("SELECT count(*) FROM spatial_ref_sys WHERE srid IN (%s, %s)", (src, dst))
    if cur.fetchone()[0] != len({src, dst}):
        raise ValidationError(f"EPSG:{src} or EPSG:{dst} is not a known CRS")
    [g] = _one(cur, "SELECT ST_AsGeoJSON(ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(%s), %s), %s))",
               (_geojson(i["geometry"]), src, dst))
    return {"geometry": json.loads(g), "crs": f"EPSG:{dst}"}


SQL_PROCESSES: dict[str, Callable] = {
    "buffer": _buffer, "intersection": _intersection, "union": _union, "simplify": _simplify,
    "convex-hull": _convex_hull, "area-length": _area_length,
    "point-in-polygon": _point_in_polygon, "reproject": _reproject,
}


def classify_pg(exc: Exception) -> Exception:
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg.OperationalError) and not state:
        return TransientError(f"PostgreSQL unavailable: {exc}".splitlines()[0])
    if state.startswith("08") or state in TRANSIENT_STATES:
        return TransientError(f"PostgreSQL {state}: {exc}".splitlines()[0])
    return PermanentError(f"PostgreSQL {state or type(exc).__name__}: {exc}".splitlines()[0])


class PostgisTier:
    name = "postgis"

    def __init__(self, dsn: str, connect_timeout_s: float = 5.0) -> None:
        self.dsn, self.connect_timeout_s = dsn, connect_timeout_s
        self._schema_ready = False

    def supports(self, process_id: str) -> bool:
        return process_id in SQL_PROCESSES

    def ensure_schema(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout_s) as conn:
            conn.execute(SCHEMA)
        self._schema_ready = True

    def close(self) -> None:
        pass  # a connection per attempt: nothing is held between jobs

    def stored_result(self, key: str) -> dict | None:
        with psycopg.connect(self.dsn, connect_timeout=self.connect_timeout_s) as conn:
            row = conn.execute("SELECT outputs FROM geoflux_job_results WHERE idempotency_key = %s",
                               (key,)).fetchone()
        return row[0] if row else None

    def _attempt(self, ctx: JobContext, inputs: dict, conn_box: list) -> dict:
        if not self._schema_ready:
            self.ensure_schema()
        with psycopg.connect(self.dsn, connect_timeout=self.connect_timeout_s,
                             application_name=f"geoflux:{ctx.job_id}"[:63]) as conn:
            conn_box.append(conn)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT outputs FROM geoflux_job_results WHERE idempotency_key = %s",
                            (ctx.idempotency_key,))
                done = cur.fetchone()
                if done:
                    return done[0]  # an earlier attempt committed: never do it twice
                cur.execute(f"SET LOCAL statement_timeout = {int(ctx.timeout_s * 1000)}")
                outputs = SQL_PROCESSES[ctx.process_id](cur, inputs)
                cur.execute("""INSERT INTO geoflux_job_results (idempotency_key, job_id, process_id, outputs)
                               VALUES (%s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING""",
                            (ctx.idempotency_key, ctx.job_id, ctx.process_id, Jsonb(outputs)))
            return outputs

    async def run(self, ctx: JobContext, inputs: dict, progress: Callable[[int], None],
                  cancelled: Callable[[], bool]) -> dict:
        if not self.supports(ctx.process_id):
            raise PermanentError(f"process {ctx.process_id} has no PostGIS implementation")
        progress(10)
        conn_box: list = []
        task = asyncio.ensure_future(asyncio.to_thread(self._attempt, ctx, inputs, conn_box))
        try:
            while not task.done():
                if cancelled():
                    for conn in conn_box:
                        conn.cancel_safe()  # stops the running statement in PostgreSQL
                    raise JobCancelled(f"job {ctx.job_id} dismissed while running")
                await asyncio.wait({task}, timeout=0.05)
            outputs = task.result()
        except (JobCancelled, ValidationError):
            raise
        except psycopg.errors.QueryCanceled as exc:
            raise JobTimedOut(f"job {ctx.job_id} exceeded its {ctx.timeout_s:.0f} s timeout "
                              "(statement cancelled)") from exc
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc
        progress(100)
        return outputs
