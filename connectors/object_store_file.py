"""The object store in a local directory: one node (`geoflux up`), or processes sharing a disk.
A write goes to a temporary file in the same directory and is renamed into place, so a reader
never sees half an object."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from connectors.object_store import check_key
from geoflux.errors import TransientError


class FileObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransientError(f"object store {self.url}: {exc}") from exc

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # a full or unmounted disk: the caller may retry
            raise TransientError(f"object store put {key}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransientError(f"object store get {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise TransientError(f"object store delete {key}: {exc}") from exc

    def sweep(self, prefix: str, older_than_s: float) -> int:
        top = self.root / check_key(prefix.strip("/"))
        cutoff = time.time() - older_than_s
        removed = 0
        for path in top.rglob("*") if top.is_dir() else []:
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass  # another sweeper (another process) took it
        return removed
