"""The twin's S3: moto's S3 app behind the twin's gateway, with EventBridge events and persistence.

Users talk to it exactly as to S3 (boto3 or the AWS CLI with ``--endpoint-url``).
Two things moto does not do for us are added here through its notification hook
(:func:`mlops.twin.moto_ext.on_s3_change`, called for every object change):

- buckets whose template enables EventBridge notifications emit AWS-shaped
  "Object Created" / "Object Deleted" events onto the twin's event bus;
- every version and delete marker of every object is kept on disk with its version id
  (:mod:`.store`), durably before the request that made it is answered, and restored at
  start as it was: a version id recorded anywhere (a model's lineage) still resolves after
  a restart, even one after kill -9.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import create_backend_app

from mlops.twin import moto_ext
from mlops.twin.s3.datapath import DataPath
from mlops.twin.s3.store import CHUNK, BucketStore

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]
READS = {"GET", "HEAD", "OPTIONS"}
# operations that change what a stored version record holds without changing the versions
ABOUT_A_VERSION = {
    "PutObjectTagging",
    "DeleteObjectTagging",
    "PutObjectAcl",
    "PutObjectRetention",
    "PutObjectLegalHold",
}

REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def _legacy_key(base: Path, path: Path) -> str:
    """The key of a file in the former mirror layout (newest version only, quoted path segments)."""
    return "/".join("" if p == "%00" else urllib.parse.unquote(p) for p in path.relative_to(base).parts)


class S3Service:
    """moto's S3 API for one twin; the gateway mounts :attr:`app`."""

    def __init__(
        self,
        workdir: Path,
        on_event: Callable[[dict[str, Any]], None],
        *,
        account: str = DEFAULT_ACCOUNT_ID,
        region: str = "us-east-1",
    ) -> None:
        self.root = workdir / "s3"
        self.on_event = on_event
        self.account = account
        self.region = region
        self.eventbridge_buckets: set[str] = set()
        self.app: Any = None
        self._request = threading.local()  # keys the current request changed
        self._completing = moto_ext.MultipartCompletion()
        self._undo: list[Callable[[], None]] = []
        self._stores: dict[str, BucketStore] = {}

    @property
    def backend(self) -> Any:
        return s3_backends[self.account]["aws"]

    def start(self) -> None:
        # Every request lands in the assembly's account, whatever access key the client uses
        # (moto would otherwise derive an account from the key); the twin owns this process.
        previous = os.environ.get("MOTO_ACCOUNT_ID")
        os.environ["MOTO_ACCOUNT_ID"] = self.account
        data = DataPath(create_backend_app("s3"), self._stores.get, lambda: self.backend)
        self._undo = [
            lambda: _restore_env("MOTO_ACCOUNT_ID", previous),
            moto_ext.on_s3_change(self.backend, self._send_event),
            self._completing.install(self.backend),
            data.install(self.backend),
        ]
        self.app = self._durable(data)

    def stop(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    # -- buckets -------------------------------------------------------------------
    def create_bucket(self, name: str, *, versioned: bool, eventbridge: bool) -> None:
        backend = self.backend
        if name not in backend.buckets:
            backend.create_bucket(name, self.region)
        if versioned:
            backend.put_bucket_versioning(name, "Enabled")
        if eventbridge:
            self.eventbridge_buckets.add(name)
        self._restore(name)

    def _restore(self, bucket: str) -> int:
        """Every version of every key as it was stored; returns the number of keys."""
        store = self._stores.setdefault(bucket, BucketStore(self.root / bucket))
        moto_ext.track_versions(self.backend.get_bucket(bucket), self._changed)
        count = 0
        for key, records in store.stored():
            moto_ext.restore_versions(self.backend, bucket, key, records, lambda i, r=records: store.body(r[i]))
            count += 1
        self._import_legacy(bucket, store)
        return count

    def _import_legacy(self, bucket: str, store: BucketStore) -> None:
        """Objects a twin of the former layout mirrored (newest version per key) become versions."""
        base = store.root / "objects"
        if not base.is_dir():
            return
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            key = _legacy_key(base, path)
            if not store.read_index(key):
                self.backend.put_object(bucket, key, path.read_bytes(), disable_notification=True)
                self.sync(bucket, key)
            path.unlink()

    # -- durability ----------------------------------------------------------------------
    def _durable(self, app: WsgiApp) -> WsgiApp:
        """moto's app, with every change a request made stored durably before it is answered."""

        def durable(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ.get("REQUEST_METHOD") in READS:
                return app(environ, start_response)
            self._request.changed = set()
            try:
                result = app(environ, start_response)
                labels = environ.get("mlops.twin.labels") or {}
                if environ.get("mlops.twin.operation") in ABOUT_A_VERSION and labels.get("Key"):
                    self._request.changed.add((labels.get("Bucket", ""), labels["Key"]))
                for bucket, key in sorted(self._request.changed):
                    self.sync(bucket, key)
            finally:
                self._request.changed = None
            return result

        return durable

    def _changed(self, bucket: str, key: str) -> None:
        # Only requests' changes are stored: the twin's own puts (file assets) are made again
        # at every start, and restoring must not store what it reads.
        changed = getattr(self._request, "changed", None)
        if changed is not None:
            changed.add((bucket, key))

    def sync(self, bucket: str, key: str) -> None:
        """Store the key's versions as moto holds them now (new data files first, then the index)."""
        store = self._stores.get(bucket)
        if store is None or bucket not in self.backend.buckets:
            return
        with store.lock(key):
            records = []
            for version in moto_ext.versions(self.backend.get_bucket(bucket), key):
                record = moto_ext.version_record(self.backend, version)
                if not moto_ext.is_delete_marker(version):
                    body = moto_ext.body_of(version)
                    if body is None:  # a value moto holds (a POST upload, a copy of such): to disk, out of memory
                        body = store.write_data(_chunks(version))
                        moto_ext.attach_body(version, body)
                    record["files"] = [[path.name, size] for path, size in body.files]
                records.append(record)
            store.write_index(key, records)

    # -- moto's notification hook -------------------------------------------------
    def _send_event(self, account_id: str, name: str, bucket: Any, key: Any) -> None:
        if name == "s3:ObjectCreated:Put" and self._completing.active:
            return
        if name.startswith("s3:ObjectCreated:"):
            detail_type = "Object Created"
        elif name.startswith("s3:ObjectRemoved:"):
            detail_type = "Object Deleted"
        else:
            return
        if bucket.name in self.eventbridge_buckets:
            self.on_event(self._event(detail_type, name, bucket, key))  # must not block: it queues

    def _event(self, detail_type: str, event_name: str, bucket: Any, key: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {"key": key.name, "sequencer": f"{int(datetime.now(UTC).timestamp() * 1e6):016X}"}
        if detail_type == "Object Created":
            obj.update(size=key.size, etag=key.etag.strip('"'))
        if getattr(key, "version_id", None) and key.version_id != "null":
            obj["version-id"] = key.version_id
        detail: dict[str, Any] = {
            "version": "0",
            "bucket": {"name": bucket.name},
            "object": obj,
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": self.account,
            "source-ip-address": "127.0.0.1",
            "reason": REASONS.get(event_name, event_name.split(":")[-1]),
        }
        if detail_type == "Object Deleted":
            marker = event_name.endswith("DeleteMarkerCreated")
            detail["deletion-type"] = "Delete Marker Created" if marker else "Permanently Deleted"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": self.account,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [f"arn:aws:s3:::{bucket.name}"],
            "detail": detail,
        }


def _chunks(version: Any) -> Iterator[bytes]:
    value = version.value
    for start in range(0, len(value), CHUNK):
        yield value[start : start + CHUNK]


def _restore_env(name: str, value: str | None) -> None:
    """Leave the process environment as the service found it (moto-mocked code run later in the
    same process, tests above all, would otherwise land in the twin's account)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
