"""The `geoflux` command refuses to run another project's code that shares our package names
(PyPI has `schemas`, `services` and `connectors`), and says why."""

import os
import subprocess
import sys
from pathlib import Path

import geoflux.install_check as ic

ROOT = Path(__file__).parents[2]


def test_this_install_is_ours():
    assert ic.install_problems() == []


def run_geoflux(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-m", "geoflux", "--help"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_package_of_that_name_earlier_on_the_path_stops_the_command_with_its_location(tmp_path):
    shadow = tmp_path / "shadow"
    (shadow / "schemas").mkdir(parents=True)
    (shadow / "schemas" / "__init__.py").write_text("raise SystemExit('their schemas ran')\n")
    # the shadow `schemas` is found first; geoflux itself still comes from our tree
    done = run_geoflux(tmp_path, Path(f"{shadow}{os.pathsep}{ROOT}"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"`schemas` would be imported from {shadow.resolve() / 'schemas' / '__init__.py'}" in done.stderr
    assert "their schemas ran" not in done.stderr and "virtual environment of its own" in done.stderr


def test_the_command_starts_when_nothing_shadows_it(tmp_path):
    done = run_geoflux(tmp_path, ROOT)
    assert done.returncode == 0, done.stderr
    assert "geoflux: geofence events, CEP, jobs and alerts" in done.stdout


def test_another_distribution_behind_ours_is_no_problem_but_one_writing_into_our_folder_is(monkeypatch):
    ours = Path(ic.__file__).resolve().parents[1] / "services"
    elsewhere = Path("/somewhere/else/site-packages/services")

    class Dist:
        def __init__(self, folder):
            self.folder = folder

        def locate_file(self, name):
            return self.folder

    located = {"services": Dist(elsewhere)}
    monkeypatch.setattr(ic, "packages_distributions", lambda: {"services": ["geoflux", "services"]})
    monkeypatch.setattr(ic, "distribution", lambda name: located[name])
    assert ic.install_problems() == []
    located["services"] = Dist(ours)  # pip wrote both distributions' files into one folder
    assert ic.install_problems() == [f"`services` holds files of services too, in {ours} (pip show -f services)"]
