"""Is the code about to run ours? geoflux installs five top-level packages: `geoflux`,
`streams`, `schemas`, `connectors` and `services`. PyPI also has distributions named `schemas`,
`services` and `connectors`; installed into the same environment, their files land in the same
folders as ours, or shadow them from earlier on `sys.path`. With PyPI's `services` 0.1.1 beside
an editable geoflux, the `geoflux` command printed that project's "Console script for
services." help instead of ours: the wrong program, silently. The entry point therefore checks
first, without importing any of the packages, and refuses to start with the reason.

The fix it names: install geoflux into a virtual environment of its own.
"""

from __future__ import annotations

from importlib.metadata import distribution, packages_distributions
from importlib.util import find_spec
from pathlib import Path

OUR_PACKAGES = ("geoflux", "streams", "schemas", "connectors", "services")
DISTRIBUTION = "geoflux"


def install_problems() -> list[str]:
    """One line per package of ours that would be imported from anywhere but the folder
    `geoflux` itself comes from, or whose folder another distribution also writes files into.
    A same-named distribution elsewhere on `sys.path`, behind ours, is no problem. Empty: ours."""
    root = Path(__file__).resolve().parents[1]
    providers = packages_distributions()
    problems = []
    for name in OUR_PACKAGES:
        spec = find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is None or origin.parent.parent != root:
            problems.append(f"`{name}` would be imported from {origin or 'nowhere'}, not from {root}")
            continue
        for other in sorted({d for d in providers.get(name, []) if d.lower() != DISTRIBUTION}):
            theirs = Path(distribution(other).locate_file(name)).resolve()
            if theirs == origin.parent:
                problems.append(f"`{name}` holds files of {other} too, in {theirs} (pip show -f {other})")
    return problems
