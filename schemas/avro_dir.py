"""A directory of Avro schemas: the current version of each (`<Name>.avsc`, what writers write and
readers read into) and every version ever released (`history/<Name>/v<N>.avsc`, N from 1 in
order of release), which is what lets a record written years ago still name its writer schema.

The codec reads the product's own directory; tests point one at a copy to stage an upgrade.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import fastavro

from geoflux.errors import PermanentError

AVRO_DIR = Path(__file__).parent / "avro"
_VERSION_FILE = re.compile(r"v(\d+)\.avsc")


class AvroDir:
    def __init__(self, root: Path | str = AVRO_DIR) -> None:
        self.root = Path(root)
        self.history_root = self.root / "history"
        self._texts: dict[str, str] = {}
        self._parsed: dict[str, dict] = {}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.avsc"))

    def text(self, name: str) -> str:
        if name not in self._texts:
            path = self.root / f"{name}.avsc"
            if not path.exists():
                raise PermanentError(f"no Avro schema named {name!r} in {self.root}")
            self._texts[name] = path.read_text()
        return self._texts[name]

    def parsed(self, name: str) -> dict:
        if name not in self._parsed:
            self._parsed[name] = fastavro.parse_schema(json.loads(self.text(name)))
        return self._parsed[name]

    # -- history --------------------------------------------------------------------------------
    def history_names(self) -> list[str]:
        """Every schema that was ever released, including ones no longer current."""
        if not self.history_root.is_dir():
            return []
        return sorted(p.name for p in self.history_root.iterdir() if p.is_dir())

    def version_files(self, name: str) -> dict[int, Path]:
        folder = self.history_root / name
        found = {}
        for path in folder.glob("v*.avsc") if folder.is_dir() else []:
            match = _VERSION_FILE.fullmatch(path.name)
            if match:
                found[int(match.group(1))] = path
        return dict(sorted(found.items()))

    def versions(self, name: str) -> list[str]:
        """The released texts of `name`, oldest first (index 0 is v1)."""
        return [p.read_text() for p in self.version_files(name).values()]

    def breaks(self) -> dict[str, list[dict]]:
        """Deliberate incompatible releases (`history/breaks.json`): name -> [{version, why}].
        Full transitive compatibility is required from a schema's latest break on."""
        path = self.history_root / "breaks.json"
        return json.loads(path.read_text()) if path.exists() else {}
