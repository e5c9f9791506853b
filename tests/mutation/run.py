"""Mutation testing of the pure core with mutmut: how many small wrong edits (a `>=` made `>`,
a `+` made `-`, a constant changed) the unit tests notice.

    nice -n 19 python3 tests/mutation/run.py                      # every module with unit tests
    nice -n 19 python3 tests/mutation/run.py streams/membership.py streams/cep/kinds/count.py

Each module runs in its own scratch copy of the repository (mutmut writes a `mutants/` tree
next to the code it mutates), against only the unit test files that exercise it, with one
worker: the machine is shared. The pure modules are the ones `tests/unit/test_architecture.py`
finds (a docstring that declares "Pure."). Prints a table; the surviving mutants, with their
diffs, go to `tests/mutation/last-run.txt` (not committed) for review against
`tests/mutation/equivalent.md`, the survivors known to change nothing a caller can see.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.unit.test_architecture import PACKAGES, pure_modules  # noqa: E402

UNIT = ROOT / "tests" / "unit"
# Modules the unit tests reach through another module's API rather than by importing them.
THROUGH = {"streams/cep/kinds/": ["test_cep.py", "test_cep_engine.py", "test_cep_join.py",
                                  "test_cep_anomaly.py", "test_cep_hostile.py", "test_boundaries.py",
                                  "test_cep_match_records.py", "test_cep_rejections.py"],
           "streams/late_replay.py": ["test_membership.py", "test_membership_history.py",
                                      "test_membership_order.py", "test_membership_records.py"],
           "streams/config_validation.py": ["test_cep_rejections.py", "test_cep_parts_records.py",
                                            "test_alerting_rules_records.py", "test_escalation_records.py"]}
NOT_A_SELECTION = {"test_architecture.py"}  # imports everything, tests none of it


def test_files(module: str) -> list[str]:
    """The unit test files that import `module`, and those that reach it through another
    module's API (THROUGH)."""
    through = [f for prefix, files in THROUGH.items() if module.startswith(prefix) for f in files]
    dotted = module[:-3].replace("/", ".").removesuffix(".__init__")
    parent, _, leaf = dotted.rpartition(".")
    pattern = re.compile(rf"\b{re.escape(dotted)}\b|from {re.escape(parent)} import [^\n]*\b{leaf}\b")
    return sorted(set(through) | {p.name for p in UNIT.glob("test_*.py")
                                  if p.name not in NOT_A_SELECTION and pattern.search(p.read_text())})


def scratch_copy(module: str, tests: list[str]) -> Path:
    work = Path(tempfile.mkdtemp(prefix="geoflux-mutation-"))
    for package in PACKAGES:
        shutil.copytree(ROOT / package, work / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "tests", work / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "mutation", "browser", "faults"))
    config = {
        "source_paths": list(PACKAGES),
        "only_mutate": [module],
        "pytest_add_cli_args": ["-n", "0", "-q", "-W", "ignore::pytest.PytestUnraisableExceptionWarning"],
        "pytest_add_cli_args_test_selection": [f"tests/unit/{t}" for t in tests],
    }
    pyproject = (ROOT / "pyproject.toml").read_text() + "\n[tool.mutmut]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in config.items())
    (work / "pyproject.toml").write_text(pyproject)
    return work


# mutmut 3.7 (the newest that installs beside faust-streaming's click < 8.4) reads `item._nodeid`,
# which pytest 9 no longer has; the public `nodeid` is the same string.
SHIM = ("import sys, _pytest.nodes as n; n.Node._nodeid = property(lambda self: self.nodeid); "
        "sys.argv[0] = 'mutmut'; from mutmut.__main__ import cli; cli()")


# `mutmut show` is one process per mutant, a second or more each on a loaded machine: the
# survivors' diffs are rendered in one process instead, with the same functions `show` calls.
SHOW_ALL = ("import sys, _pytest.nodes as n; n.Node._nodeid = property(lambda self: self.nodeid); "
            "from mutmut.__main__ import Config, find_mutant, get_diff_for_mutant; Config.ensure_loaded()\n"
            "for name in sys.argv[1:]:\n"
            "    print(f'# {name}: survived'); print(get_diff_for_mutant(name, path=find_mutant(name).path)); print()")


def mutmut(work: Path, *args: str, timeout: float | None = None, script: str = SHIM) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # mutmut puts mutants/ first
    return subprocess.run([sys.executable, "-c", script, *args], cwd=work, env=env, text=True,
                          capture_output=True, timeout=timeout, start_new_session=True)


def run_module(module: str, report, timeout: float) -> dict:
    tests = test_files(module)
    row = {"module": module, "tests": len(tests), "mutants": 0, "killed": 0, "survived": 0,
           "other": 0, "seconds": 0.0, "note": ""}
    if not tests:
        row["note"] = "no unit test imports it"
        return row
    work, started = scratch_copy(module, tests), time.monotonic()
    try:
        try:
            run = mutmut(work, "run", "--max-children", "1", timeout=timeout)
        except subprocess.TimeoutExpired:
            row["note"] = f"stopped after {timeout:.0f} s"
        else:
            if run.returncode:
                row["note"] = f"mutmut exited {run.returncode}"
                report.write(f"## {module}: mutmut failed\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}\n")
        row["seconds"] = time.monotonic() - started
        mutmut(work, "export-cicd-stats")
        stats_file = work / "mutants" / "mutmut-cicd-stats.json"
        if stats_file.exists():
            stats = json.loads(stats_file.read_text())
            row.update(mutants=stats["total"], killed=stats["killed"], survived=stats["survived"])
            row["other"] = stats["total"] - stats["killed"] - stats["survived"]
            # other: a timeout (the mutant hung the tests: noticed, not counted as killed), no
            # test reaching the mutated function, or a crash; named so a reader can tell
            row["note"] = " ".join(filter(None, [row["note"], *(
                f"{k} {stats[k]}" for k in ("timeout", "no_tests", "suspicious", "segfault", "skipped")
                if stats.get(k))]))
        survivors = [line.split(":")[0].strip() for line in mutmut(work, "results").stdout.splitlines()
                     if line.strip().endswith(": survived")]
        report.write(f"## {module} ({', '.join(tests)})\n")
        if survivors:
            shown = mutmut(work, *survivors, script=SHOW_ALL)
            report.write(shown.stdout + shown.stderr[-2000:] + "\n")
        report.flush()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="pure modules (default: all)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per module")
    parser.add_argument("--report", type=Path, default=Path(__file__).with_name("last-run.txt"))
    args = parser.parse_args()
    modules = args.modules or pure_modules()
    unknown = set(modules) - set(pure_modules())
    if unknown:
        parser.error(f"not declared pure: {sorted(unknown)}")
    rows = []
    header = f"{'module':42} {'tests':>5} {'mutants':>7} {'killed':>6} {'survived':>8} {'other':>5} {'%':>6} {'s':>6}  note"
    print(header, flush=True)
    with args.report.open("w") as report:
        for module in modules:
            row = run_module(module, report, args.timeout)
            rows.append(row)
            print(line(row), flush=True)
    total = {"module": "TOTAL", "tests": sum(r["tests"] for r in rows), "note": "",
             **{k: sum(r[k] for r in rows) for k in ("mutants", "killed", "survived", "other", "seconds")}}
    print(line(total))
    return 0


def line(r: dict) -> str:
    pct = f"{100 * r['killed'] / r['mutants']:.1f}" if r["mutants"] else "-"
    return (f"{r['module']:42} {r['tests']:>5} {r['mutants']:>7} {r['killed']:>6} {r['survived']:>8} "
            f"{r['other']:>5} {pct:>6} {r['seconds']:>6.0f}  {r['note']}")


if __name__ == "__main__":
    sys.exit(main())
