"""Regenerates docs/BENCHMARKS.md: runs each benchmark with the arguments below (the ones the doc
shows) and writes what it printed into the doc's block for it, between
`<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, with the command, the commit, the date and the
machine (cores, RAM, CPU model, load average when the benchmark started). The prose around the
blocks is left as it is.

    python benchmarks/regenerate.py                    # every benchmark: an hour or more
    python benchmarks/regenerate.py audit_sink cep_throughput
    python benchmarks/regenerate.py --smoke --out /tmp/BENCHMARKS.md   # every one in its smoke size

A block is written as soon as its benchmark has finished; a benchmark that fails keeps its old
block, the others still run, and the exit status is 1. `--smoke` never writes the real doc: its
figures mean nothing, it shows the whole chain works.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "BENCHMARKS.md"

# block name -> the benchmark's arguments for the doc (each also takes --smoke)
BENCHMARKS: dict[str, list[str]] = {
    "geofence_throughput": ["--fences", "1000,10000,100000"],
    "evaluator_cpu": ["--fences", "10000", "--entities", "5000", "--updates", "60000"],
    "entity_history": ["--fences", "1000", "--lateness-s", "30"],
    "fence_churn": ["--fences", "10000,100000"],
    "geofence_churn": ["--fences", "100000", "--rates", "10000", "--churn", "100"],
    "alert_delivery": ["--alerts", "20000", "--rate", "1000", "--down-alerts", "2000", "--down-rate", "200"],
    "alert_soak": ["--minutes", "5", "--rate", "10"],
    "jobs_throughput": ["--jobs", "1000"],
    "jobs_memory": ["--statuses", "1000000"],
    "cep_throughput": ["--events", "100000"],
    "cep_cpu": ["--events", "40000"],
    "audit_sink": ["--events", "50000", "--batch-sizes", "500,2000,5000"],
    "gateway_fanout": ["--subscribers", "100", "--events", "2000", "--rate", "100"],
    "state_restore": ["--entities", "100000,1000000"],
    "stack_start": ["--warm-runs", "2"],
    "rest_evaluate": ["--requests", "20000", "--concurrency", "100,500"],
}

# blocks written by a script of another name (the same script run with other arguments)
SCRIPTS: dict[str, str] = {"geofence_churn": "geofence_throughput"}


def script(name: str) -> str:
    return SCRIPTS.get(name, name)


def block_re(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- bench:{re.escape(name)} -->\n)(.*?)(<!-- /bench:{re.escape(name)} -->)", re.S)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def commit(out: Path) -> str:
    """The commit, and "dirty" when code differs from it (the doc being written does not count)."""
    # not git(): its strip() would eat the first line's leading status column
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    changed = [line[3:] for line in status.splitlines()]
    mine = str(out.resolve().relative_to(ROOT)) if out.resolve().is_relative_to(ROOT) else None
    return git("rev-parse", "--short", "HEAD") + (" dirty" if [p for p in changed if p != mine] else "")


def machine() -> str:
    mem = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} cores, {int(mem.split()[1]) / 1024 ** 2:.1f} GiB RAM, {cpu}"


def run(name: str, smoke: bool, out: Path) -> tuple[bool, str]:
    """(succeeded, the block's body)."""
    rev = commit(out)  # per benchmark: the tree may change during a run of hours
    argv = ["python", f"benchmarks/{script(name)}.py", *(["--smoke"] if smoke else BENCHMARKS[name])]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    started, t0 = datetime.now(timezone.utc), time.monotonic()
    print(f"{name}: {shlex.join(argv)} (load average {load})", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - t0
    if done.returncode != 0:
        print(f"{name} FAILED (exit {done.returncode}) after {wall:.0f} s; its block is kept:\n"
              f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}", file=sys.stderr, flush=True)
        return False, ""
    print(f"{name}: done in {wall:.0f} s", file=sys.stderr, flush=True)
    return True, (f"`{shlex.join(argv)}`: commit {rev}, {started:%Y-%m-%d %H:%M} UTC, {wall:.0f} s; "
                  f"{machine()}; load average {load} at the start.\n\n"
                  f"```\n{done.stdout.strip(chr(10))}\n```\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {', '.join(BENCHMARKS)}")
    ap.add_argument("--smoke", action="store_true", help="smoke sizes; needs --out (never the real doc)")
    ap.add_argument("--out", type=Path, help=f"where the doc is written (default {DOC.relative_to(ROOT)})")
    args = ap.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"no benchmark {', '.join(unknown)}; there are: {', '.join(BENCHMARKS)}")
    out = args.out or DOC
    if args.smoke and out.resolve() == DOC.resolve():
        ap.error("--smoke figures mean nothing: give --out a file other than the doc")
    text = DOC.read_text()
    names = args.names or list(BENCHMARKS)
    missing = [n for n in names if not block_re(n).search(text)]
    if missing:
        ap.error(f"{DOC.relative_to(ROOT)} has no block for {', '.join(missing)}")
    failed = []
    for name in names:
        ok, body = run(name, args.smoke, out)
        if not ok:
            failed.append(name)
            continue
        if out.resolve() == DOC.resolve():
            text = DOC.read_text()  # the prose may have been edited while the benchmark ran
        text = block_re(name).sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
        out.write_text(text)  # after every benchmark: a long run's finished blocks are kept
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (their blocks in {out} are the old ones)")


if __name__ == "__main__":
    main()
