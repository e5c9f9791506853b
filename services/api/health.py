"""What /readyz checks: the broker always; the schema registry when GEOFLUX_SCHEMA_REGISTRY_URL
is set; PostgreSQL when GEOFLUX_PG_DSN is set. Each check returns None (fine) or the reason."""

from __future__ import annotations

import asyncio
import base64
import os
import urllib.request

from connectors.kafka_admin import admin_client
from geoflux.settings import KafkaSettings, RegistrySettings
from schemas.codec import tls_context

TIMEOUT_S = 3.0


def check_kafka(kafka: KafkaSettings) -> str | None:
    try:
        md = admin_client(kafka).list_topics(timeout=TIMEOUT_S)
        return None if md.brokers else "no brokers"
    except Exception as exc:  # any failure means not ready; the reason is reported
        return str(exc)


def check_registry(reg: RegistrySettings) -> str | None:
    req = urllib.request.Request(reg.url.rstrip("/") + "/subjects")
    if reg.username:
        secret = reg.password.get_secret_value() if reg.password else ""
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{reg.username}:{secret}".encode()).decode())
    try:
        ctx = tls_context(reg.url, reg.ca_location, reg.certificate_location, reg.key_location)
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=ctx) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except Exception as exc:  # refused, timed out, 5xx: all mean not ready
        return str(exc)


def check_database(dsn: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=int(TIMEOUT_S)) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # psycopg.OperationalError and friends
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


async def readiness(kafka: KafkaSettings) -> dict[str, dict]:
    """{"kafka": {"ok": bool, "detail": ...}, "registry": ..., "database": ...} — only the
    dependencies that are configured are listed."""
    checks = {"kafka": (check_kafka, kafka, kafka.bootstrap)}
    reg = RegistrySettings()
    if reg.url:
        checks["registry"] = (check_registry, reg, reg.url)
    dsn = os.environ.get("GEOFLUX_PG_DSN")
    if dsn:
        checks["database"] = (check_database, dsn, dsn.split("@")[-1])  # no user or password shown
    results = await asyncio.gather(*(asyncio.to_thread(fn, arg) for fn, arg, _ in checks.values()))
    return {name: {"ok": err is None, "target": target, **({"error": err} if err else {})}
            for (name, (_, _, target)), err in zip(checks.items(), results)}
