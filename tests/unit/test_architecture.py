"""The import rules of docs/CONTRIBUTING.md, enforced: a pure core, and one import direction."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PURE = ["geoflux/errors.py", "streams/geofence.py", "streams/fence_index.py",
        "streams/membership.py", "streams/evaluator_records.py", "streams/evaluator_index.py",
        "streams/state/timers.py", "streams/offset_tracker.py", "streams/work_queue.py",
        *(f"streams/cep/{m}.py" for m in ("patterns", "specs", "outputs", "index", "keystate", "engine",
                                          "alignment")),
        *(f"streams/cep/kinds/{m}.py" for m in ("__init__", "base", "sequence", "count", "presence",
                                                "comovement", "aggregate", "join", "speed", "outliers",
                                                "stats"))]
IO_LIBRARIES = {"confluent_kafka", "aiokafka", "faust", "psycopg", "aiohttp", "boto3",
                "botocore", "socket", "urllib", "requests", "http", "subprocess", "asyncio"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def transitive_imports(rel: str) -> set[str]:
    seen, todo, found = set(), [rel], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imports_of(ROOT / current):
            found.add(name)
            candidate = name.replace(".", "/") + ".py"
            if (ROOT / candidate).exists():
                todo.append(candidate)
    return found


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module):
    bad = {n for n in transitive_imports(module) if n.split(".")[0] in IO_LIBRARIES}
    assert not bad, f"{module} reaches {sorted(bad)}"


@pytest.mark.parametrize("package", ["connectors", "schemas", "geoflux"])
def test_lower_layers_never_import_streams_or_services(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = {n for n in imports_of(path) if n.split(".")[0] in ("streams", "services")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
