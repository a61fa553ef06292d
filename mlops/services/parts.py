"""Multi-part datasets: the part files under one folder, committed by a marker.

Layout (the way Spark, Glue, Hive and Athena write)::

    incoming/<model>/<dataset>/part-00000.parquet      parts: any name not starting with "_" or "."
    incoming/<model>/<dataset>/year=2026/part-00001... (sub-folders too)
    incoming/<model>/<dataset>/_SUCCESS                 commit marker: every part under the folder
    incoming/<model>/<dataset>/_manifest.json           or a manifest naming the parts

A manifest is ``{"files": ["part-00000.parquet", ...]}`` (keys relative to the folder,
or full ``s3://`` URIs), or Redshift's ``{"entries": [{"url": "s3://..."}]}``.

S3 sends one event per object. A part's event does not validate anything: the first
one starts a watch (one per folder, claimed with a conditional write) that waits
``dataset.commit_timeout_minutes`` and then reports the dataset as incomplete if no
marker came; the marker's event validates the whole folder as one dataset version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from mlops.s3io import error_code

SUCCESS_MARKER = "_SUCCESS"
MANIFEST = "_manifest.json"
MARKERS = (SUCCESS_MARKER, MANIFEST)


@dataclass(frozen=True)
class PartObject:
    key: str
    version_id: str | None
    etag: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "version_id": self.version_id, "etag": self.etag, "size": self.size}


@dataclass(frozen=True)
class DatasetKey:
    """Where an incoming key sits: ``model``, the dataset ``prefix`` (with a trailing /) and the file ``name``."""

    model: str
    prefix: str
    name: str

    @property
    def folder(self) -> str:
        return self.prefix.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_marker(self) -> bool:
        return self.name in MARKERS

    @property
    def is_hidden(self) -> bool:
        return self.name.startswith(("_", "."))


def dataset_key(model: str, rest: str) -> DatasetKey | None:
    """For ``incoming/<model>/<rest>``: the dataset it belongs to, or None for a single object (no folder)."""
    if "/" not in rest:
        return None
    folder = rest.split("/", 1)[0]
    return DatasetKey(model, f"incoming/{model}/{folder}/", rest.rsplit("/", 1)[-1])


def is_part(key: str) -> bool:
    """A data file of a dataset folder: not a folder placeholder, nothing under or named ``_*``/``.*``
    (markers, ``_temporary/`` of a Spark job still running, ``.crc`` checksums)."""
    inside = key.split("/")[3:]  # below incoming/<model>/<dataset>/
    return bool(inside) and not key.endswith("/") and not any(s.startswith(("_", ".")) for s in inside)


def list_parts(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every part object under the prefix (markers, hidden files and folder placeholders left out), sorted by key."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if is_part(obj["Key"]):
                out.append(obj)
    return sorted(out, key=lambda o: o["Key"])


def marker_present(s3: Any, bucket: str, prefix: str) -> str | None:
    """The key of the commit marker under the prefix, if one exists."""
    for name in MARKERS:
        try:
            s3.head_object(Bucket=bucket, Key=prefix + name)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                continue
            raise
        return prefix + name
    return None


def manifest_keys(body: bytes, bucket: str, prefix: str) -> tuple[list[str], str | None]:
    """Part keys a manifest names, or a problem saying why it cannot be used."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        return [], f"{prefix}{MANIFEST} is not valid JSON ({exc})"
    if isinstance(data, dict) and isinstance(data.get("files"), list):
        names = data["files"]
    elif isinstance(data, dict) and isinstance(data.get("entries"), list):
        names = [e.get("url") if isinstance(e, dict) else None for e in data["entries"]]
    else:
        return [], f'{prefix}{MANIFEST} must be {{"files": [...]}} or {{"entries": [{{"url": ...}}]}}'
    keys = []
    for name in names:
        if not isinstance(name, str) or not name:
            return [], f"{prefix}{MANIFEST} lists {name!r}, which is not a file name or an s3:// URI"
        if name.startswith("s3://"):
            named_bucket, _, key = name[5:].partition("/")
            if named_bucket != bucket or not key.startswith(prefix):
                return [], f"{prefix}{MANIFEST} lists {name}, which is not under s3://{bucket}/{prefix}"
            keys.append(key)
        else:
            keys.append(prefix + name.lstrip("/"))
    if not keys:
        return [], f"{prefix}{MANIFEST} lists no files"
    return sorted(dict.fromkeys(keys)), None


def head_parts(s3: Any, bucket: str, keys: list[str]) -> tuple[list[PartObject], list[str]]:
    """Version, ETag and size of each part (the versions the validation reads), and the keys that do not exist."""
    found, missing = [], []
    for key in keys:
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                missing.append(key)
                continue
            raise
        found.append(PartObject(key, head.get("VersionId"), head["ETag"].strip('"'), int(head["ContentLength"])))
    return found, missing


def dataset_sha256(parts: list[tuple[PartObject, str]]) -> str:
    """Content hash of a multi-part dataset: over each part's key, version and SHA-256, in key order."""
    lines = sorted(f"{p.key}\t{p.version_id or ''}\t{sha}\n" for p, sha in parts)
    return hashlib.sha256("".join(lines).encode()).hexdigest()
