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


class S3StreamWriter:
    """Write an object by appending bytes, holding at most one part in memory (nothing on disk).

    Small objects are one PutObject; past ``part_size`` bytes it becomes a multipart upload
    (aborted if the writer is closed by an exception). Use as a context manager.
    """

    def __init__(self, s3: Any, loc: S3Location, part_size: int = 16 * 1024 * 1024) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 multipart parts are at least 5 MiB")
        self.s3, self.loc, self.part_size = s3, loc, part_size
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self.part_size:
            self._flush_part()

    def _flush_part(self) -> None:
        if self._upload_id is None:
            created = self.s3.create_multipart_upload(Bucket=self.loc.bucket, Key=self.loc.key)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = self.s3.upload_part(
            Bucket=self.loc.bucket,
            Key=self.loc.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})
        self._buffer.clear()

    def close(self) -> None:
        if self._upload_id is None:
            self.s3.put_object(Bucket=self.loc.bucket, Key=self.loc.key, Body=bytes(self._buffer))
            return
        if self._buffer:
            self._flush_part()
        self.s3.complete_multipart_upload(
            Bucket=self.loc.bucket,
            Key=self.loc.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.loc.bucket, Key=self.loc.key, UploadId=self._upload_id)

    def __enter__(self) -> S3StreamWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
