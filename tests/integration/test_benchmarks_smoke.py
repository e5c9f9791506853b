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
    "cep_cpu.py": "stage      events  decode us (ceiling)",
    "entity_history.py": "reports/s points apply us chunked us",
    "evaluator_cpu.py": "evaluator, Python's default collector",
    "fence_churn.py": "  fences        index   P50 ms   P95 ms",
    "gateway_fanout.py": " delivered  seconds ceiling msgs/s",
    "geofence_throughput.py": "  fences  ceiling/s  drain upd/s  ratio",
    "jobs_memory.py": "finished job statuses",
    "jobs_throughput.py": "in-process / ceiling:",
    "rest_evaluate.py": " conc requests  ceiling/s eval req/s  ratio",
    "stack_start.py": "run                         seconds  ceiling  ratio",
}
# these have smoke tests of their own, with more to check in their output
OWN_TESTS = {"cep_throughput.py": "test_benchmark_cep_smoke.py", "state_restore.py": "test_benchmark_state_smoke.py"}


def smoke_env(bootstrap: str, dsn: str, tmp_path: Path) -> dict:
    env = {**os.environ, "GEOFLUX_KAFKA_BOOTSTRAP": bootstrap, "GEOFLUX_PG_DSN": dsn,
           "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    env.pop("GEOFLUX_SCHEMA_REGISTRY_URL", None)
    return env


def benchmark_scripts() -> set[str]:
    return {p.name for p in (ROOT / "benchmarks").glob("*.py")
            if not p.name.startswith("_") and p.name != "regenerate.py"}


def test_every_benchmark_has_a_smoke_run_and_a_block_in_the_doc():
    from benchmarks.regenerate import BENCHMARKS, DOC, block_re
    from benchmarks.regenerate import script as script_of

    assert benchmark_scripts() == set(HEADERS) | set(OWN_TESTS)
    for script, test in OWN_TESTS.items():
        assert script in (Path(__file__).parent / test).read_text()
    assert {f"{script_of(name)}.py" for name in BENCHMARKS} == benchmark_scripts()
    doc = DOC.read_text()
    assert [name for name in BENCHMARKS if len(block_re(name).findall(doc)) != 1] == []


def test_regenerate_writes_smoke_blocks_into_out_never_the_doc(tmp_path):
    """Two benchmarks that need no broker: the chain from a script's table to its block."""
    doc = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    out = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "regenerate.py"), "--smoke",
                          "--out", str(out), "entity_history", "evaluator_cpu"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (ROOT / "docs" / "BENCHMARKS.md").read_text() == doc
    written = out.read_text()
    for name, script in (("entity_history", "entity_history.py"), ("evaluator_cpu", "evaluator_cpu.py")):
        block = written.split(f"<!-- bench:{name} -->\n", 1)[1].split(f"<!-- /bench:{name} -->", 1)[0]
        assert block.startswith(f"`python benchmarks/{script} --smoke`: commit "), block
        assert "cores," in block and "load average" in block and HEADERS[script] in block, block
    # everything outside the two blocks is the doc's own text, untouched
    from benchmarks.regenerate import block_re

    def outside(text: str) -> str:
        for name in ("entity_history", "evaluator_cpu"):
            text = block_re(name).sub("", text)
        return text

    assert outside(written) == outside(doc)
    refused = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "regenerate.py"), "--smoke",
                              "entity_history"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--out" in refused.stderr


@pytest.mark.parametrize("script", sorted(HEADERS))
def test_benchmark_runs_in_smoke_size(script, bootstrap, postgres_dsn, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], cwd=ROOT,
                         env=smoke_env(bootstrap, postgres_dsn, tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])
    assert HEADERS[script] in run.stdout, run.stdout[-2000:]
