"""Every benchmark runs in a smoke size, so a broken one fails the suite instead of rotting
(the jobs benchmark once failed with 401 for months: it predated API keys). No figures are
asserted: only that the script runs to its table, against the session's broker and
PostgreSQL. And `benchmarks/regenerate.py --smoke` writes its blocks into a copy of the doc,
never into docs/BENCHMARKS.md."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

ROOT = Path(__file__).parents[2]

# script -> a line of its table's header, printed only once every phase has run
HEADERS = {
    "alert_delivery.py": "scenario      alerts  rate/s  SENT/s  ratio",
    "alert_soak.py": "severity  alerts   SENT  lost",
    "audit_sink.py": " batch     rows  distinct  rows/s steady",
    "entity_history.py": "reports/s points apply us state us of ceiling",
    "evaluator_cpu.py": "evaluator: decode, process, changelog encode, store write",
    "gateway_fanout.py": " delivered  seconds ceiling msgs/s",
    "geofence_throughput.py": "  fences  ceiling/s  drain upd/s  ratio",
    "jobs_memory.py": "finished job statuses",
    "jobs_throughput.py": "in-process / ceiling:",
    "stack_start.py": "run                         seconds  ceiling  ratio",
}
# these have smoke tests of their own, with more to check in their output
OWN_TESTS = {"cep_throughput.py": "test_benchmark_cep_smoke.py", "state_restore.py": "test_benchmark_state_smoke.py"}


def smoke_env(bootstrap: str, dsn: str, tmp_path: Path) -> dict:
    env = {**os.environ, "GEOFLUX_KAFKA_BOOTSTRAP": bootstrap, "GEOFLUX_PG_DSN": dsn,
           "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("GEOFLUX_SCHEMA_REGISTRY_URL", None)
    return env


def test_every_benchmark_has_a_smoke_run():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")
               if not p.name.startswith("_") and p.name != "regenerate.py"}
    assert scripts == set(HEADERS) | set(OWN_TESTS)
    for script, test in OWN_TESTS.items():
        assert script in (Path(__file__).parent / test).read_text()


@pytest.mark.parametrize("script", sorted(HEADERS))
def test_benchmark_runs_in_smoke_size(script, bootstrap, postgres_dsn, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], cwd=ROOT,
                         env=smoke_env(bootstrap, postgres_dsn, tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    assert HEADERS[script] in run.stdout, run.stdout[-2000:]
