"""Small S3 helpers shared by the Lambdas, the CLI and the twin: URIs, streamed
downloads with a content hash, JSON objects and conditional writes used as locks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        if not uri.startswith("s3://") or "/" not in uri[5:]:
            raise ValueError(f"not an S3 URI (s3://bucket/key): {uri!r}")
        bucket, key = uri[5:].split("/", 1)
        return cls(bucket, key)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def download_with_sha256(s3: Any, bucket: str, key: str, version_id: str | None, dest: Path) -> str:
    """Stream an object version to ``dest`` and return the SHA-256 of its bytes."""
    extra = {"VersionId": version_id} if version_id else {}
    body = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"]
    digest = hashlib.sha256()
    with dest.open("wb") as out:
        for chunk in iter(lambda: body.read(CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """The SHA-256 of a local file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def put_json(s3: Any, loc: S3Location, payload: Any, **extra: Any) -> None:
    body = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
    s3.put_object(Bucket=loc.bucket, Key=loc.key, Body=body, ContentType="application/json", **extra)


def get_json(s3: Any, loc: S3Location) -> tuple[Any, str] | None:
    """Return (payload, etag) or None when the object does not exist."""
    try:
        obj = s3.get_object(Bucket=loc.bucket, Key=loc.key)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(obj["Body"].read()), obj["ETag"]


def put_json_if_absent(s3: Any, loc: S3Location, payload: Any) -> bool:
    """Create ``loc`` only if nothing is there yet (S3 conditional write). True if created."""
    try:
        put_json(s3, loc, payload, IfNoneMatch="*")
    except ClientError as exc:
        if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
            return False
        raise
    return True


def replace_json_if_unchanged(s3: Any, loc: S3Location, payload: Any, etag: str) -> bool:
    """Overwrite ``loc`` only if it still has ``etag`` (S3 conditional write). True if replaced."""
    try:
        put_json(s3, loc, payload, IfMatch=etag)
    except ClientError as exc:
        if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
            return False
        raise
    return True


def copy_object(s3: Any, src: S3Location, version_id: str | None, dest: S3Location) -> None:
    """Server-side copy; the managed transfer switches to multipart for large objects."""
    source = {"Bucket": src.bucket, "Key": src.key}
    if version_id:
        source["VersionId"] = version_id
    s3.copy(source, dest.bucket, dest.key)
