"""benchmarks/cep_throughput.py cannot rot: it runs end to end in its smoke size against the
test broker. No figure is asserted (speed is for the benchmark to print), only that every
phase ran and printed its row."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).parents[2]


def test_cep_benchmark_runs_in_its_smoke_size(bootstrap, tmp_path):
    env = {**os.environ, "GEOFLUX_KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("GEOFLUX_SCHEMA_REGISTRY_URL", None)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cep_throughput.py"), "--smoke"],
                          env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("| ceiling: transactional pass-through", "| re-key stage", "| drained through re-key + entity + geofence",
                "entity state:", "sustained", "match latency P50"):
        assert row in done.stdout, (row, done.stdout)
