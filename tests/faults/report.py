"""Runs the fault matrix and writes what it measured into docs/SLA.md.

    python -m tests.faults.report            # runs tests/faults, then rewrites the table
    python -m tests.faults.report --from F   # only rewrites the table from a results file

The table sits between two marker lines in docs/SLA.md; everything else there is kept. Each
cell names the test that measured it; a cell whose test failed says so, with what it saw.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.checks import PIPELINES

ROOT = Path(__file__).resolve().parents[2]
SLA = ROOT / "docs" / "SLA.md"
BEGIN, END = "<!-- fault-matrix:begin -->", "<!-- fault-matrix:end -->"
FAULTS = ("SIGKILL of the worker", "broker SIGKILL + restart", "broker SIGSTOP 30 s",
          "PostgreSQL stopped 30 s", "channel 503/429/timeout/410 for a minute",
          "poison records on every input")


def run(results: Path) -> int:
    env = dict(os.environ, GEOFLUX_FAULT_RESULTS=str(results))
    return subprocess.call([sys.executable, "-m", "pytest", "tests/faults", "-q", "-n", "3", "-p", "no:cacheprovider",
                            "-m", "faults"],
                           cwd=ROOT, env=env)


def cell(row: dict | None) -> str:
    if row is None:
        return "not run"
    ok = row["lost"] == 0 and row["duplicated"] == 0 and not row["problems"]
    parts = [f"{row['delivered']}/{row['expected']}", f"lost {row['lost']}", f"dup {row['duplicated']}"]
    if row["repeated"]:
        parts.append(f"repeat {row['repeated']}")
    if row["dead_lettered"]:
        parts.append(f"DLQ {row['dead_lettered']}")
    text = ", ".join(parts)
    return text if ok else f"**FAILED**: {text}; {'; '.join(row['problems'])}"


def table(rows: list[dict], commit: str, how: str = "by `python -m tests.faults.report`") -> str:
    by = {(r["fault"], r["pipeline"]): r for r in rows}
    lines = [BEGIN, "",
             f"Measured at commit `{commit}` on {platform.node() or 'this machine'} "
             f"({os.cpu_count()} cores, broker and every worker on it), {time.strftime('%Y-%m-%d')}, "
             f"{how}. A cell: items delivered/expected, then lost (neither "
             "delivered nor dead-lettered), duplicated (two records for one item), repeated (the same "
             "item sent again, dropped by its id downstream) and dead-lettered (set aside with the reason).",
             "",
             "| fault | " + " | ".join(PIPELINES) + " |", "|---|" + "---|" * len(PIPELINES)]
    for fault in FAULTS:
        lines.append(f"| {fault} | " + " | ".join(cell(by.get((fault, p))) for p in PIPELINES) + " |")
    lines += ["", "Tests behind the cells (one per cell, `tests/faults/`):", ""]
    for fault in FAULTS:
        tests = sorted({r["test"].split("[")[0] for r in rows if r["fault"] == fault})
        lines.append(f"- {fault}: " + (", ".join(f"`{t}[<pipeline>]`" for t in tests) or "not run"))
    recovery = {r["fault"]: r.get("recovery_s") for r in rows}
    lines += ["", "Fault to every pipeline settled (the fault's own duration included), seconds: "
              + ", ".join(f"{f} {recovery[f]}" for f in FAULTS if recovery.get(f) is not None) + ".",
              "", END]
    return "\n".join(lines)


def write(rows: list[dict], commit: str | None = None, how: str | None = None) -> None:
    commit = commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                      text=True).stdout.strip() or "unknown"
    text = SLA.read_text()
    block = table(rows, commit, *([how] if how else []))
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## The fault matrix\n\n" + block + "\n"
    SLA.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="a results file (JSON lines) already measured")
    parser.add_argument("--commit", help="the commit the results file was measured at (default: HEAD)")
    parser.add_argument("--how", help="how the results file was measured, for the table's first line")
    args = parser.parse_args()
    code = 0
    if args.source is None:
        args.source = Path(tempfile.mkstemp(prefix="fault-matrix-", suffix=".jsonl")[1])
        code = run(args.source)
    rows = [json.loads(line) for line in args.source.read_text().splitlines() if line.strip()]
    write(rows, args.commit, args.how)
    print(f"docs/SLA.md: {len(rows)} cells written from {args.source}")
    return code


if __name__ == "__main__":
    sys.exit(main())
