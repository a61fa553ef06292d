"""Where the twin's S3 keeps object versions on disk: every version and delete marker, once.

Layout under ``<workdir>/s3/<bucket>/``:

- ``data/<file>``: bytes of object versions (file names are random, never reused); a version is
  one file, or the files of its parts in order when it was uploaded in parts (no copy);
- ``index/<hh>/<sha256 of the key>.json``: the key's versions, oldest first, each with its
  version id, date, ETag, metadata and its data files (delete markers have none);
- ``uploads/<file>``: parts of multipart uploads in progress (moved to ``data/`` on completion;
  uploads in progress do not outlive the twin).

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


class DiskBody:
    """An object's bytes as files on disk (one, or one per part), read only where asked."""

    def __init__(self, files: list[tuple[Path, int]], etag: str | None = None, *, owned: bool = False) -> None:
        self.files = files
        self.size = sum(size for _, size in files)
        self.etag = etag  # hex MD5 (or md5-of-md5s-N), None when unknown
        self.checksums: dict[str, str] = {}  # algorithm -> base64 value, as verified on upload
        self.owned = owned  # an upload's part: its file goes when moto disposes of the part

    def ranges(self, start: int, end: int) -> Iterator[tuple[Path, int, int]]:
        """(file, offset, length) pieces of bytes ``start``..``end`` (inclusive)."""
        base = 0
        for path, size in self.files:
            lo, hi = max(start, base), min(end, base + size - 1)
            if lo <= hi:
                yield path, lo - base, hi - lo + 1
            base += size

    def read(self, start: int = 0, end: int | None = None, chunk: int = CHUNK) -> RangeReader:
        """Bytes ``start``..``end`` in chunks; the files are opened now, so a version deleted
        meanwhile still reads whole (as S3 finishes a GET that started before a DELETE)."""
        return RangeReader(self, start, self.size - 1 if end is None else end, chunk)

    def reader(self) -> BodyReader:
        return BodyReader(self)

    def adopt(self, files: list[tuple[Path, int]]) -> None:
        """The files moved (an upload's parts became an object's data): no longer this body's to remove."""
        self.files, self.owned = files, False


class RangeReader:
    """An iterable of a body's bytes over file descriptors opened up front; ``close()`` releases them
    (WSGI servers call it when the response ends, complete or not)."""

    def __init__(self, body: DiskBody, start: int, end: int, chunk: int) -> None:
        self.chunk = chunk
        self.pieces: list[tuple[int, int, int]] = []
        try:
            for path, offset, length in body.ranges(start, end):
                self.pieces.append((os.open(path, os.O_RDONLY), offset, length))
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[bytes]:
        try:
            for fd, offset, length in self.pieces:
                while length > 0:
                    data = os.pread(fd, min(self.chunk, length), offset)
                    if not data:
                        raise OSError(f"an object file is shorter than recorded (fd {fd})")
                    offset += len(data)
                    length -= len(data)
                    yield data
        finally:
            self.close()

    def close(self) -> None:
        pieces, self.pieces = self.pieces, []
        for fd, _, _ in pieces:
            os.close(fd)


class BodyReader:
    """The file-like view moto keeps as a key's value buffer; holds no file open between reads."""

    def __init__(self, body: DiskBody) -> None:
        self.body = body
        self.pos = 0

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.body.size + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        if self.pos >= self.body.size:
            return b""
        end = self.body.size - 1 if size is None or size < 0 else min(self.body.size, self.pos + size) - 1
        data = b"".join(self.body.read(self.pos, end))
        self.pos += len(data)
        return data

    def close(self) -> None:
        if self.body.owned:
            for path, _ in self.body.files:
                path.unlink(missing_ok=True)
            self.body.owned = False


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
        self.uploads = root / "uploads"
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

    def write_data(self, chunks: Iterable[bytes]) -> DiskBody:
        path = self.new_data_path()
        return DiskBody([(path, write_durably(path, chunks))])

    def new_upload_path(self) -> Path:
        self.uploads.mkdir(parents=True, exist_ok=True)
        return self.uploads / uuid.uuid4().hex

    def body(self, record: dict[str, Any]) -> DiskBody:
        return DiskBody([(self.data / name, size) for name, size in record["files"]], record.get("etag"))

    def make_data(self, parts: list[DiskBody]) -> list[tuple[Path, int]]:
        """Parts' files moved into ``data/``, fsynced: the bytes of a completed upload, without a copy."""
        self.data.mkdir(parents=True, exist_ok=True)
        moved = []
        for part in parts:
            for path, size in part.files:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                target = self.data / path.name
                if path != target:
                    path.replace(target)
                moved.append((target, size))
        fsync_dir(self.data)
        return moved

    def read_index(self, key: str) -> list[dict[str, Any]]:
        path = self.index_path(key)
        if not path.is_file():
            return []
        return list(json.loads(path.read_text(encoding="utf-8"))["versions"])

    def write_index(self, key: str, records: list[dict[str, Any]]) -> None:
        """Replace the key's versions (no versions: the key is gone), then drop data no version names."""
        before = _files(self.read_index(key))
        path = self.index_path(key)
        if records:
            path.parent.mkdir(parents=True, exist_ok=True)
            body = json.dumps({"key": key, "versions": records}, ensure_ascii=False).encode("utf-8", "surrogatepass")
            write_durably(path, [body])
        elif path.exists():
            path.unlink()
            fsync_dir(path.parent)
        for name in before - _files(records):
            (self.data / name).unlink(missing_ok=True)

    def stored(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """Every key with its versions, oldest first; removes what a crash left half-written."""
        named: set[str] = set()
        for path in sorted(self.index.rglob("*.json")) if self.index.is_dir() else []:
            doc = json.loads(path.read_text(encoding="utf-8"))
            named.update(_files(doc["versions"]))
            yield doc["key"], doc["versions"]
        for leftover in [*self.index.rglob(".*.tmp")] if self.index.is_dir() else []:
            leftover.unlink(missing_ok=True)
        for path in self.data.iterdir() if self.data.is_dir() else []:
            if path.name not in named:
                path.unlink(missing_ok=True)  # written, never acknowledged
        for path in self.uploads.iterdir() if self.uploads.is_dir() else []:
            path.unlink(missing_ok=True)  # parts of uploads a previous twin never completed


def _files(records: list[dict[str, Any]]) -> set[str]:
    return {name for r in records for name, _size in r.get("files", [])}
