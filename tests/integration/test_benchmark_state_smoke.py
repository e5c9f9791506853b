"""benchmarks/state_restore.py cannot rot: it runs end to end in its smoke size (a few thousand
entities, a hundred fences) against the test broker. No figure is asserted (speed is for the
benchmark to print), only that every phase ran and printed its row: the ceilings, each
stage's cold / warm / kill start, and the occupancy queries."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).parents[2]


def test_state_benchmark_runs_in_its_smoke_size(bootstrap, tmp_path):
    env = {**os.environ, "GEOFLUX_KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("GEOFLUX_SCHEMA_REGISTRY_URL", None)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "state_restore.py"), "--smoke"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    lines = done.stdout.splitlines()
    assert any(line.split()[1:2] == ["evaluator"] for line in lines if line[:9].strip() == "2,000"), done.stdout
    for stage in ("evaluator", "cep-entity"):
        starts = [line.split()[2] for line in lines if line.startswith(stage + " ")]
        assert starts == ["cold", "warm", "kill"], (stage, done.stdout)
    assert "occupants P50/P95/P99 ms" in done.stdout, done.stdout
