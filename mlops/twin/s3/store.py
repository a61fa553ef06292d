"""Where the twin's S3 keeps object versions on disk: every version and delete marker, once.

Layout under ``<workdir>/s3/<bucket>/``:

- ``data/<file>``: the bytes of one object version (file names are random, never reused);
- ``index/<hh>/<sha256 of the key>.json``: the key's versions, oldest first, each with its
  version id, date, ETag, metadata and the name of its data file (delete markers have none).

A version's data file is written and fsynced before the index that names it replaces the old
one (write, fsync, rename, fsync of the directory), so a kill -9 at any moment leaves either the
old or the new index, and at worst a data file no index names, removed at the next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

CHUNK = 1024 * 1024


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, chunks: Iterable[bytes]) -> int:
    """Write ``path`` so that it is whole on disk or absent; returns its size."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    size = 0
    with tmp.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)
    return size


class BucketStore:
    """One bucket's versions on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.index = root / "index"
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def index_path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return self.index / digest[:2] / f"{digest}.json"

    def new_data_path(self) -> Path:
        self.data.mkdir(parents=True, exist_ok=True)
        return self.data / uuid.uuid4().hex

    def write_data(self, chunks: Iterable[bytes]) -> str:
        path = self.new_data_path()
        write_durably(path, chunks)
        return path.name

    def read_index(self, key: str) -> list[dict[str, Any]]:
        path = self.index_path(key)
        if not path.is_file():
            return []
        return list(json.loads(path.read_text(encoding="utf-8"))["versions"])

    def write_index(self, key: str, records: list[dict[str, Any]]) -> None:
        """Replace the key's versions (no versions: the key is gone), then drop data no version names."""
        before = {r["file"] for r in self.read_index(key) if r.get("file")}
        path = self.index_path(key)
        if records:
            path.parent.mkdir(parents=True, exist_ok=True)
            body = json.dumps({"key": key, "versions": records}, ensure_ascii=False).encode("utf-8", "surrogatepass")
            write_durably(path, [body])
        elif path.exists():
            path.unlink()
            fsync_dir(path.parent)
        for name in before - {r["file"] for r in records if r.get("file")}:
            (self.data / name).unlink(missing_ok=True)

    def stored(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every key with its versions, oldest first; removes what a crash left half-written."""
        named: set[str] = set()
        for path in sorted(self.index.rglob("*.json")) if self.index.is_dir() else []:
            doc = json.loads(path.read_text(encoding="utf-8"))
            named.update(r["file"] for r in doc["versions"] if r.get("file"))
            yield doc["key"], doc["versions"]
        for leftover in [*self.index.rglob(".*.tmp")] if self.index.is_dir() else []:
            leftover.unlink(missing_ok=True)
        for path in self.data.iterdir() if self.data.is_dir() else []:
            if path.name not in named:
                path.unlink(missing_ok=True)  # written, never acknowledged
