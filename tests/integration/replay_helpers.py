"""Shared by the replay tests: raw topic contents, NDJSON replay requests, CLI runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

from confluent_kafka import Consumer, KafkaError, TopicPartition

from connectors.kafka_admin import admin_client
from connectors.offsets import committed_offsets
from geoflux.settings import KafkaSettings
from schemas.catalogue import topic
from tests.integration.geo_helpers import OPERATOR_KEY, worker_env


def read_raw(settings: KafkaSettings, logical: str, timeout_s: float = 20.0) -> list[tuple[int, int, bytes, bytes]]:
    """Every committed record of a topic now: (partition, offset, key, value), offset order."""
    t = topic(logical, settings)
    c = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "enable.auto.commit": False})
    parts = range(settings.partitions)
    c.assign([TopicPartition(t, p, 0) for p in parts])
    out, eof, deadline = [], set(), time.monotonic() + timeout_s
    try:
        while len(eof) < len(parts):
            assert time.monotonic() < deadline, f"{t} not read to its end in {timeout_s}s"
            for m in c.consume(500, 0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                out.append((m.partition(), m.offset(), m.key(), m.value()))
        return sorted(out)
    finally:
        c.close()


def replay(base: str, body, key: str | None = OPERATOR_KEY, query: str = "",
           timeout: float = 60.0) -> tuple[int, list[dict] | dict]:
    """POST /api/v1/replay: (200, NDJSON lines) or (status, problem document)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(f"{base}/api/v1/replay{query}", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            assert resp.headers["Content-Type"].startswith("application/x-ndjson")
            return resp.status, [json.loads(line) for line in resp.read().splitlines() if line]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def geoflux(settings: KafkaSettings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=worker_env(settings),
                          capture_output=True, text=True, timeout=60)


def committed(settings: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    return committed_offsets(admin_client(settings), settings.topic_prefix + group, settings)
