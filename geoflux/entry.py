"""The `geoflux` command's entry point: check that the packages about to run are ours
(`install_check`), then start the CLI. The one module here that imports `services`: the
entry point is the top of the house, whatever folder it is filed in."""

from __future__ import annotations

import sys

from geoflux.install_check import install_problems


def main() -> None:
    problems = install_problems()
    if problems:
        print("geoflux: refusing to start: another project's packages share our names in this "
              "environment;\n  " + "\n  ".join(problems) +
              "\n  install geoflux into a virtual environment of its own "
              "(python3 -m venv .venv && .venv/bin/pip install -e .)", file=sys.stderr)
        sys.exit(2)
    from services.cli import main as cli

    cli()
