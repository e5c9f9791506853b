"""The audit table in PostgreSQL/PostGIS: schema, idempotent chunked writes, queries, retention.

One table partitioned by RANGE on `ts`, one partition per UTC day, created on demand (under an
advisory lock, IF NOT EXISTS, so concurrent sinks agree). The primary key `(id, ts)` makes a
write idempotent: a chunk is COPYed into a temporary table and moved with
`INSERT .. SELECT .. ON CONFLICT DO NOTHING`, so a re-delivered chunk adds nothing.
Retention drops whole partitions, which costs no vacuum and no row-by-row delete.

psycopg errors are converted at this boundary (`classify_pg`): connection loss and the
SQLSTATEs of a restarting server are TransientError; bad data is PermanentError.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Iterable

import psycopg
from psycopg import sql

from connectors.audit_rows import (AuditQuery, AuditRow, partition_bounds, partition_name,
                                   partitions_before)
from connectors.compute.postgis import classify_pg
from geoflux.errors import ConfigurationError, TransientError

_COLUMNS = ("id", "kind", "tenant_id", "entity_id", "geofence_id", "type", "ts", "lon", "lat",
            "payload", "src_topic", "src_partition", "src_offset")
_NO_PARTITION = "23514"  # "no partition of relation found for row": a day dropped under us


def _check_table(table: str) -> str:
    if not table.isidentifier() or len(table) > 50 or table.lower() != table:
        raise ConfigurationError(f"audit table name {table!r}: lower-case identifier, <= 50 chars")
    return table


class AuditStore:
    def __init__(self, dsn: str, table: str = "geoflux_audit", connect_timeout_s: float = 5.0) -> None:
        self.dsn, self.table, self.connect_timeout_s = dsn, _check_table(table), connect_timeout_s
        self.t = sql.Identifier(table)
        self._conn: psycopg.Connection | None = None
        self._days: set[date] = set()  # partitions this process knows exist
        self._schema_ready = False

    # -- connections ------------------------------------------------------------------------
    def connect(self, **kw: Any) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, connect_timeout=self.connect_timeout_s,
                                   application_name="geoflux-audit", **kw)
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc

    def _writer(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _lock(self, cur: psycopg.Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"geoflux-ddl:{self.table}",))

    # -- schema and partitions --------------------------------------------------------------
    def ensure_schema(self) -> None:
        t = self.t
        ddl = [sql.SQL("CREATE EXTENSION IF NOT EXISTS postgis"),
               sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
                   id text NOT NULL, kind text NOT NULL, tenant_id text, entity_id text,
                   geofence_id text, type text, ts timestamptz NOT NULL,
                   geom geometry(Point, 4326), payload jsonb NOT NULL,
                   src_topic text NOT NULL, src_partition int NOT NULL, src_offset bigint NOT NULL,
                   ingested_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)""").format(t)]
        for col in ("ts", "entity_id", "geofence_id", "tenant_id"):
            cols = sql.SQL("(ts)") if col == "ts" else sql.SQL("({}, ts)").format(sql.Identifier(col))
            ddl.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} {}").format(
                sql.Identifier(f"{self.table}_{col}_idx"), t, cols))
        ddl.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gist (geom)").format(
            sql.Identifier(f"{self.table}_geom_idx"), t))
        try:
            with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
                self._lock(cur)
                for stmt in ddl:
                    cur.execute(stmt)
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc
        self._schema_ready = True

    def ensure_partitions(self, days: Iterable[date]) -> None:
        missing = sorted(set(days) - self._days)
        if not missing:
            return
        if not self._schema_ready:
            self.ensure_schema()
        # its own short transaction: creating a partition locks the parent, a write should not
        try:
            with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
                self._lock(cur)
                for day in missing:
                    lo, hi = partition_bounds(day)
                    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} "
                                        "FOR VALUES FROM ({}) TO ({})").format(
                        sql.Identifier(partition_name(self.table, day)), self.t,
                        sql.Literal(lo), sql.Literal(hi)))
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc
        self._days.update(missing)

    # -- writes -----------------------------------------------------------------------------
    def write(self, rows: list[AuditRow]) -> int:
        """Writes a chunk in one transaction; returns how many rows were new (the rest were
        repeats). Raises TransientError (retry the same chunk) or PermanentError."""
        if not rows:
            return 0
        self.ensure_partitions({r.day for r in rows})
        conn = self._writer()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("""CREATE TEMP TABLE IF NOT EXISTS audit_in (
                    id text, kind text, tenant_id text, entity_id text, geofence_id text, type text,
                    ts timestamptz, lon float8, lat float8, payload text, src_topic text,
                    src_partition int, src_offset bigint) ON COMMIT DELETE ROWS""")
                with cur.copy(f"COPY audit_in ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                    for r in rows:
                        copy.write_row((r.id, r.kind, r.tenant_id, r.entity_id, r.geofence_id,
                                        r.type, r.ts, r.lon, r.lat, r.payload, r.src_topic,
                                        r.src_partition, r.src_offset))
                cur.execute(sql.SQL("""INSERT INTO {} (id, kind, tenant_id, entity_id, geofence_id,
                        type, ts, geom, payload, src_topic, src_partition, src_offset)
                    SELECT id, kind, tenant_id, entity_id, geofence_id, type, ts,
                        CASE WHEN lon IS NULL THEN NULL
                             ELSE ST_SetSRID(ST_MakePoint(lon, lat), 4326) END,
                        payload::jsonb, src_topic, src_partition, src_offset FROM audit_in
                    ON CONFLICT DO NOTHING""").format(self.t))
                return cur.rowcount
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) == _NO_PARTITION:
                self._days.clear()  # retention dropped a day we cached: create it again
                raise TransientError(f"audit partition missing, recreating: {exc}".splitlines()[0]) from exc
            err = classify_pg(exc)
            if isinstance(err, TransientError) or conn.closed:
                self.close()  # the next attempt starts on a fresh connection
            raise err from exc

    # -- reads ------------------------------------------------------------------------------
    def query(self, q: AuditQuery) -> list[dict]:
        where, params = [sql.SQL("TRUE")], []
        for col, value in (("tenant_id", q.tenant_id), ("entity_id", q.entity_id),
                           ("geofence_id", q.geofence_id), ("kind", q.kind), ("type", q.type)):
            if value is not None:
                where.append(sql.SQL("{} = %s").format(sql.Identifier(col)))
                params.append(value)
        if q.start is not None:
            where.append(sql.SQL("ts >= %s"))
            params.append(q.start)
        if q.end is not None:
            where.append(sql.SQL("ts < %s"))
            params.append(q.end)
        if q.bbox is not None:
            # && uses the GiST index; ST_Intersects keeps points on the box's edge exact
            where.append(sql.SQL("geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326) AND "
                                 "ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, 4326))"))
            params += [*q.bbox, *q.bbox]
        stmt = sql.SQL("""SELECT id, kind, tenant_id, entity_id, geofence_id, type,
                (extract(epoch FROM ts) * 1000)::bigint, ST_X(geom), ST_Y(geom), payload,
                src_topic, src_partition, src_offset
            FROM {} WHERE {} ORDER BY ts, id LIMIT %s OFFSET %s""").format(
            self.t, sql.SQL(" AND ").join(where))
        try:
            with self.connect() as conn:
                rows = conn.execute(stmt, [*params, q.limit, q.offset]).fetchall()
        except psycopg.errors.UndefinedTable:
            return []  # the sink has not written anything yet
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc
        keys = ("id", "kind", "tenant_id", "entity_id", "geofence_id", "type", "ts_ms", "lon",
                "lat", "payload", "topic", "partition", "offset")
        return [dict(zip(keys, r)) for r in rows]

    def count(self) -> tuple[int, int]:
        """(rows, distinct ids): equal when nothing was written twice."""
        try:
            with self.connect() as conn:
                return conn.execute(sql.SQL("SELECT count(*), count(DISTINCT id) FROM {}").format(
                    self.t)).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0, 0
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc

    # -- retention --------------------------------------------------------------------------
    def partitions(self) -> list[str]:
        try:
            with self.connect() as conn:
                rows = conn.execute("""SELECT c.relname FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = to_regclass(%s)""", (self.table,)).fetchall()
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc
        return sorted(r[0] for r in rows)

    def drop_before(self, cutoff: date) -> list[str]:
        """Drops every daily partition wholly before `cutoff`; returns their names."""
        doomed = partitions_before(self.table, self.partitions(), cutoff)
        for name in doomed:  # one short transaction each: the parent's lock is held briefly
            try:
                with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
                    self._lock(cur)
                    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            except psycopg.Error as exc:
                raise classify_pg(exc) from exc
        self._days = {d for d in self._days if d >= cutoff}
        return doomed
