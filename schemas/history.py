"""Every released schema version, kept so a record written by an old release stays readable.

    python -m schemas.history snapshot   # after editing schemas/avro/X.avsc: records it (and
                                         # any committed content history lacks) as the next
                                         # version of X, if FULL_TRANSITIVE compatible
    python -m schemas.history check      # what the unit tests check (exit 1 with the reasons)

A version is a file `history/<Name>/v<N>.avsc`; files are only ever added, never edited. The
last version of each schema is its current .avsc. A deliberate incompatible release is
recorded in `history/breaks.json` with why; compatibility is required from the latest break on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from schemas.avro_dir import AVRO_DIR, AvroDir
from schemas.compat import full_transitive_problems

HOW_TO_RECORD = "record it with `python -m schemas.history snapshot` and commit schemas/avro/history"


def _same(a: str, b: str) -> bool:
    """Same schema content, whatever the formatting."""
    return json.loads(a) == json.loads(b)


def baseline(schemas: AvroDir, name: str) -> int:
    """The first version that must be compatible with every later one."""
    return max((b["version"] for b in schemas.breaks().get(name, [])), default=1)


def compatibility_problems(schemas: AvroDir, name: str, candidates: list[str] | None = None) -> list[str]:
    """FULL_TRANSITIVE violations among `name`'s versions since its baseline (plus
    `candidates`, versions about to be recorded)."""
    first = baseline(schemas, name)
    versions = schemas.versions(name)[first - 1:] + (candidates or [])
    return [f"{name} {p}" for p in full_transitive_problems(versions, first)]


def history_problems(schemas: AvroDir) -> list[str]:
    """Everything wrong with the history as it stands: numbering, breaks, currency, compatibility."""
    found = []
    for name in schemas.history_names():
        numbers = list(schemas.version_files(name))
        if numbers != list(range(1, len(numbers) + 1)):
            found.append(f"{name}: versions {numbers} are not v1..v{len(numbers)}")
        found += compatibility_problems(schemas, name)
    for name, breaks in schemas.breaks().items():
        for b in breaks:
            found += _break_problems(schemas, name, b)
    for name in schemas.names():
        versions = schemas.versions(name)
        if not versions or not _same(versions[-1], schemas.text(name)):
            found.append(f"{name}.avsc is not the last version in history/{name}/: {HOW_TO_RECORD}")
    return found


def _break_problems(schemas: AvroDir, name: str, entry: dict) -> list[str]:
    """A recorded break must be real and explained, so breaks.json cannot silence the check."""
    version, versions = entry.get("version", 0), schemas.versions(name)
    if not entry.get("why"):
        return [f"breaks.json: {name} v{version} says no why"]
    if not 1 < version <= len(versions):
        return [f"breaks.json: {name} has no v{version} that could break"]
    if not full_transitive_problems(versions[:version]):
        return [(f"breaks.json: {name} v{version} is compatible with every earlier version: "
                 "not a break, remove the entry")]
    return []


def snapshot(schemas: AvroDir, released: dict[str, list[str]] | None = None) -> tuple[list[Path], list[str]]:
    """Records each changed current schema as its next version, after any committed content
    history lacks (`released`, from `released_from_git`: a schema changed twice between two
    snapshots). Writes nothing if any of them is incompatible: returns ([], reasons) then, as
    a registry would refuse the registration."""
    pending, refused = [], []
    current = set(schemas.names())
    for name in sorted(current | set(released or {})):
        recorded, new = schemas.versions(name), []
        for text in (released or {}).get(name, []):
            if not any(_same(text, v) for v in recorded + new):
                new.append(text)
        if name in current and not (recorded + new and _same((recorded + new)[-1], schemas.text(name))):
            new.append(schemas.text(name))
        if new:
            refused += compatibility_problems(schemas, name, new)
            folder = schemas.history_root / name
            pending += [(folder / f"v{len(recorded) + i}.avsc", text) for i, text in enumerate(new, 1)]
    if refused:
        return [], refused
    for path, text in pending:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return [path for path, _ in pending], []


def released_from_git(avro_dir: Path) -> dict[str, list[str]] | None:
    """Every distinct content each `<avro_dir>/<Name>.avsc` had on the main line (the first
    parents from HEAD: what landed, not a branch's work in progress), oldest first; None where
    the history cannot be read (no git, not a repository, a shallow clone)."""
    def git(*args: str, stdin: bytes | None = None) -> bytes:
        return subprocess.run(["git", "-C", str(avro_dir), *args], input=stdin,
                              capture_output=True, check=True, timeout=60).stdout
    try:
        if git("rev-parse", "--is-shallow-repository").strip() != b"false":
            return None
        # a merge lands a branch: diffed against its first parent, it shows what landed
        log = git("log", "-m", "--first-parent", "--topo-order", "--reverse", "--raw", "--no-abbrev",
                  "--format=", "--", ":(glob)*.avsc").decode()
    except (OSError, subprocess.SubprocessError):
        return None
    blobs: list[tuple[str, str]] = []
    for line in log.splitlines():
        if line.startswith(":"):
            meta, path = line.split("\t", 1)
            blob = meta.split()[3]
            if set(blob) != {"0"}:
                blobs.append((Path(path).stem, blob))
    contents = git("cat-file", "--batch", stdin="".join(f"{b}\n" for _, b in blobs).encode())
    released: dict[str, list[str]] = {}
    for name, text in zip((n for n, _ in blobs), _batch_bodies(contents)):
        versions = released.setdefault(name, [])
        if not any(_same(v, text) for v in versions):
            versions.append(text)
    return released


def _batch_bodies(out: bytes):
    pos = 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        yield out[header_end + 1:header_end + 1 + size].decode()
        pos = header_end + 1 + size + 1


def unrecorded_releases(schemas: AvroDir, released: dict[str, list[str]]) -> list[str]:
    """Released contents (from `released_from_git`) that history lacks."""
    found = []
    for name, texts in released.items():
        recorded = schemas.versions(name)
        for text in texts:
            if not any(_same(text, r) for r in recorded):
                found.append(f"{name}: a committed version is missing from history/{name}/ "
                             f"(history files are only ever added, never edited): {HOW_TO_RECORD}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["snapshot", "check"])
    parser.add_argument("--dir", type=Path, default=AVRO_DIR, help="the schema directory")
    args = parser.parse_args(argv)
    schemas = AvroDir(args.dir)
    if args.command == "snapshot":
        written, refused = snapshot(schemas, released_from_git(args.dir))
        for reason in refused:
            print(f"refused: {reason}", file=sys.stderr)
        for path in written:
            print(f"recorded {path}")
        if not (written or refused):
            print("history already has every current schema")
        return 1 if refused else 0
    problems = history_problems(schemas)
    released = released_from_git(args.dir)
    problems += unrecorded_releases(schemas, released) if released is not None else []
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
