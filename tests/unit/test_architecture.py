"""The import rules of docs/CONTRIBUTING.md, enforced: a pure core, and one import direction.

A module declares itself pure in its docstring: a sentence of the first paragraph that starts
with "Pure." or "Pure:". Every declared module is checked here, so a new pure module is covered
the moment it says what it is, and a module that stops being pure has to stop saying so.
"""

import ast
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("geoflux", "streams", "schemas", "connectors", "services")
IO_LIBRARIES = {"confluent_kafka", "aiokafka", "faust", "psycopg", "aiohttp", "boto3",
                "botocore", "socket", "urllib", "requests", "http", "subprocess", "asyncio",
                "os", "shutil", "tempfile", "io", "logging", "structlog",
                "prometheus_client", "threading", "multiprocessing", "concurrent", "rocksdict",
                "sqlite3", "ssl", "select", "smtplib", "signal"}  # not pathlib: a path is a value
DECLARATION = re.compile(r"(^|[.!?:]\s+)Pure[.:]")
# What the pure core holds at least: the discovery must not quietly find less.
MUST_BE_PURE = {
    "geoflux/errors.py", "geoflux/keys.py", "streams/geofence.py", "streams/fence_index.py",
    "streams/membership.py", "streams/evaluator_index.py", "streams/evaluator_records.py",
    "streams/state/timers.py", "streams/late_replay.py", "streams/entity_history.py",
    *(f"streams/cep/{m}.py" for m in ("patterns", "specs", "outputs", "index", "keystate", "engine",
                                      "alignment")),
    *(f"streams/cep/kinds/{m}.py" for m in ("__init__", "base", "sequence", "count", "presence",
                                            "comovement", "aggregate", "join", "speed", "outliers",
                                            "stats")),
    *(f"streams/alerting/{m}.py" for m in ("rules", "noise", "escalation", "delivery_policy", "sla")),
    "streams/runtime/offset_tracker.py", "streams/runtime/work_queue.py",
    *(f"streams/jobs/{m}.py" for m in ("alert_policy", "idempotency", "object_keys", "quotas")),
    "schemas/compat.py", "schemas/compiled_writer.py", "connectors/audit_rows.py",
    "connectors/channels/sms_text.py", "connectors/compute/batch_policy.py",
    "connectors/compute/sns_signature.py", "services/devstack/restart_policy.py",
    "services/api/gateway_protocol.py",
}


def declared_pure(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return bool(DECLARATION.search(" ".join(doc.split("\n\n")[0].split())))


def pure_modules() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for package in PACKAGES
                  for p in (ROOT / package).rglob("*.py") if declared_pure(p))


def imports_of(path: Path) -> set[str]:
    """Absolute module names `path` imports; `from a import b` also names `a.b` (b may be a module)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def module_file(name: str) -> str | None:
    """The repository file a module name is, if it is one of ours."""
    for candidate in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
        if (ROOT / candidate).is_file():
            return candidate
    return None


def transitive_imports(rel: str) -> set[str]:
    """Every module `rel` reaches, through our own modules and the packages they sit in."""
    seen, todo, found = set(), [rel], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in imports_of(ROOT / current):
            found.add(name)
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                candidate = module_file(".".join(parts[:i]))
                if candidate:
                    todo.append(candidate)
    return found


def test_the_declared_pure_core_holds_what_it_must():
    missing = MUST_BE_PURE - set(pure_modules())
    assert not missing, f"not declared pure (docstring): {sorted(missing)}"


@pytest.mark.parametrize("module", pure_modules())
def test_pure_modules_do_no_io(module):
    bad = {n for n in transitive_imports(module) if n.split(".")[0] in IO_LIBRARIES}
    assert not bad, f"{module} reaches {sorted(bad)}"


def test_the_purity_check_can_fail(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "__init__.py").write_text('"""Stages."""\nimport socket\n')
    (tmp_path / "streams" / "leaf.py").write_text('"""A leaf. Pure."""\nfrom streams import x\n')
    (tmp_path / "streams" / "other.py").write_text('"""Not pure, only mentions pure."""\n')
    assert pure_modules() == ["streams/leaf.py"]
    assert "socket" in transitive_imports("streams/leaf.py")  # reached through the package


# The `geoflux` command's entry point checks the install, then starts the CLI: the top of the
# house, filed in `geoflux/` so the check runs before any `services` module is imported.
ENTRY_POINTS = {"geoflux/entry.py", "geoflux/__main__.py"}


@pytest.mark.parametrize("package", ["connectors", "schemas", "geoflux"])
def test_lower_layers_never_import_streams_or_services(package):
    for path in (ROOT / package).rglob("*.py"):
        if path.relative_to(ROOT).as_posix() in ENTRY_POINTS:
            continue
        bad = {n for n in imports_of(path) if n.split(".")[0] in ("streams", "services")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_our_deprecation_warnings_fail_the_test_and_other_libraries_do_not():
    """pyproject's filterwarnings: a DeprecationWarning raised from our packages is an error."""
    for module in ("streams.membership", "connectors.kafka_config", "services.api.auth"):
        with pytest.raises(DeprecationWarning):
            warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module=module)
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module="faust.app")
        warnings.warn_explicit("old", DeprecationWarning, "x.py", 1, module="streamsx.app")
    assert not [w for w in seen if w.category is DeprecationWarning]


def wait_for_calls(path: Path) -> list[int]:
    """Lines that call asyncio's wait_for, however it was imported."""
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and (isinstance(node.func, ast.Attribute) and node.func.attr == "wait_for"
                 and isinstance(node.func.value, ast.Name) and node.func.value.id == "asyncio"
                 or isinstance(node.func, ast.Name) and node.func.id == "wait_for")]


def test_no_asyncio_wait_for_in_the_product():
    """On Python 3.11 asyncio.wait_for drops a cancellation that arrives as the awaited thing
    completes (CPython gh-86296): a cancelled job ran on to its timeout. `async with
    asyncio.timeout(...)` keeps the cancel."""
    found = {str(p.relative_to(ROOT)): lines for package in PACKAGES
             for p in (ROOT / package).rglob("*.py") if (lines := wait_for_calls(p))}
    assert not found, f"asyncio.wait_for at {found}"


def test_the_wait_for_check_can_fail(tmp_path):
    (tmp_path / "a.py").write_text("import asyncio\nfrom asyncio import wait_for\n"
                                   "async def f(e):\n    await asyncio.wait_for(e.wait(), 1)\n"
                                   "    await wait_for(e.wait(), 1)\n    await wait_for_cluster()\n")
    assert wait_for_calls(tmp_path / "a.py") == [4, 5]
