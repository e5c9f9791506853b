"""Every `from X import Y` in our packages resolves, including the ones inside functions that
only run when a command does (the CLI imports each worker lazily), and in the tests and the
benchmarks: a renamed class is caught here in a second, not by a worker that crash-loops under
`geoflux up` or a benchmark nobody ran."""

import ast
import importlib
from pathlib import Path

import pytest

from tests.unit.test_architecture import PACKAGES

ROOT = Path(__file__).parents[2]
OURS = PACKAGES + ("tests", "benchmarks")


def our_imports():
    for package in OURS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                        and node.module.split(".")[0] in OURS:
                    for alias in node.names:
                        yield path.relative_to(ROOT).as_posix(), node.lineno, node.module, alias.name


@pytest.mark.parametrize("package", OURS)
def test_every_import_of_ours_resolves(package):
    broken = []
    for where, line, module, name in our_imports():
        if not where.startswith(package + "/"):
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            broken.append(f"{where}:{line}: {module}: {exc}")
            continue
        if name != "*" and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                broken.append(f"{where}:{line}: {module} has no {name}")
    assert not broken, "\n".join(broken)
