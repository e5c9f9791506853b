"""Every benchmark runs in a smoke size, so a broken one fails the suite instead of rotting
(the jobs benchmark once failed with 401 for months: it predated API keys). No figures are
asserted: only that the script runs to its table."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("script,header", [
    ("jobs_throughput.py", "in-process / ceiling:"),
    ("jobs_memory.py", "finished job statuses"),
])
def test_benchmark_runs_in_smoke_size(script, header, bootstrap, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], cwd=ROOT,
                         env={**os.environ, "GEOFLUX_KAFKA_BOOTSTRAP": bootstrap, "PYTHONPATH": str(ROOT),
                              "TMPDIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    assert header in run.stdout, run.stdout[-2000:]
