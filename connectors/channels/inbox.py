"""The `inbox` channel: a receiver inside the product. A notification sent through it is a row
in PostgreSQL (GEOFLUX_PG_DSN, table `geoflux_inbox`), which GET /api/v1/inbox and the console
show — so alerts can be seen arriving with no external service (the demo uses it).

It is a real channel on the same delivery path as every other: the delivery worker's retries,
breaker and dead-letter queue apply, and the delivery id is the row's primary key, so a retried
delivery is kept once (its `deliveries` count says how often it arrived). PostgreSQL down is a
transient error (retried, then the DLQ); any other database error is permanent.

Settings: none are needed; `{"retention_days": N}` (default 7) drops older rows as new ones
arrive.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from connectors.channels.base import ChannelConfig, Notification
from connectors.compute.postgis import classify_pg
from geoflux.errors import ValidationError
from geoflux.settings import PostgresSettings

TABLE = "geoflux_inbox"
CONNECT_TIMEOUT_S = 5
SCHEMA = sql.SQL("""
CREATE TABLE IF NOT EXISTS {t} (
    delivery_id text PRIMARY KEY,
    channel     text NOT NULL,
    tenant_id   text NOT NULL,
    alert_id    text NOT NULL,
    severity    text NOT NULL,
    action      text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    labels      jsonb NOT NULL,
    created_ms  bigint NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    deliveries  integer NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS {i} ON {t} (tenant_id, received_at DESC);
""")


@dataclass(frozen=True, slots=True)
class InboxStore:
    """The table: made on first use, written by the channel, read by the API."""

    dsn: str
    table: str = TABLE

    def _connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn, connect_timeout=CONNECT_TIMEOUT_S, **kwargs)

    def ensure_schema(self) -> None:
        with self._connect(autocommit=True) as conn:
            conn.execute(SCHEMA.format(t=sql.Identifier(self.table),
                                       i=sql.Identifier(f"{self.table}_tenant_received")))

    def put(self, channel: str, n: Notification, retention_days: float) -> int:
        """Keeps the notification once per delivery id; how many times it has arrived."""
        t = sql.Identifier(self.table)
        with self._connect() as conn:
            row = conn.execute(sql.SQL(
                "INSERT INTO {t} (delivery_id, channel, tenant_id, alert_id, severity, action, title,"
                " body, labels, created_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (delivery_id) DO UPDATE SET deliveries = {t}.deliveries + 1"
                " RETURNING deliveries").format(t=t),
                (n.delivery_id, channel, n.tenant_id, n.alert_id, n.severity, n.action, n.title,
                 n.body, json.dumps(n.labels), n.created_ms)).fetchone()
            conn.execute(sql.SQL("DELETE FROM {t} WHERE tenant_id = %s AND received_at < "
                                 "now() - make_interval(secs => %s)").format(t=t),
                         (n.tenant_id, retention_days * 86_400))
        return row[0]

    def list(self, tenant_id: str | None, limit: int, offset: int) -> tuple[list[dict], int]:
        """(rows newest first, total); tenant None: every tenant's."""
        t = sql.Identifier(self.table)
        where, args = (sql.SQL(" WHERE tenant_id = %s"), [tenant_id]) if tenant_id else (sql.SQL(""), [])
        with self._connect(row_factory=dict_row) as conn:
            total = conn.execute(sql.SQL("SELECT count(*) AS n FROM {t}").format(t=t) + where,
                                 args).fetchone()["n"]
            rows = conn.execute(sql.SQL(
                "SELECT delivery_id, channel, tenant_id, alert_id, severity, action, title, body,"
                " labels, created_ms, (extract(epoch FROM received_at) * 1000)::bigint AS received_ms,"
                " deliveries FROM {t}").format(t=t) + where + sql.SQL(
                " ORDER BY received_at DESC, delivery_id LIMIT %s OFFSET %s"),
                [*args, limit, offset]).fetchall()
        return rows, total


class InboxChannel:
    kind = "inbox"

    def __init__(self, config: ChannelConfig) -> None:
        self.name = config.name
        self.retention_days = float(config.settings.get("retention_days", 7))
        self.store = InboxStore(PostgresSettings().dsn, TABLE)
        self._schema_ready = False

    @classmethod
    def validate(cls, settings: dict) -> None:
        unknown = set(settings) - {"retention_days"}
        if unknown:
            raise ValidationError(f"settings.{sorted(unknown)[0]} is not an inbox setting "
                                  "(only retention_days)")
        days = settings.get("retention_days", 7)
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days <= 3650:
            raise ValidationError("settings.retention_days must be a number of days, 0-3650")

    def _send(self, n: Notification) -> str:
        try:
            if not self._schema_ready:
                self.store.ensure_schema()
                self._schema_ready = True
            arrived = self.store.put(self.name, n, self.retention_days)
        except psycopg.Error as exc:
            raise classify_pg(exc) from exc
        return "kept" if arrived == 1 else f"kept once (arrived {arrived} times)"

    async def send(self, n: Notification) -> str:
        return await asyncio.to_thread(self._send, n)

    async def close(self) -> None:
        pass
