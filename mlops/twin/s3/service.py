"""The twin's S3: moto's S3 app behind the twin's gateway, with EventBridge events and persistence.

Users talk to it exactly as to S3 (boto3 or the AWS CLI with ``--endpoint-url``).
Two things moto does not do for us are added here through its notification hook
(:func:`mlops.twin.moto_ext.on_s3_change`, called for every object change):

- buckets whose template enables EventBridge notifications emit AWS-shaped
  "Object Created" / "Object Deleted" events onto the twin's event bus;
- every object's latest version is mirrored to ``<workdir>/s3/<bucket>/<key>`` and
  restored at start, so stopping the twin loses no uploaded data. Older versions
  and delete markers live only while the twin runs.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import create_backend_app

from mlops.twin import moto_ext

REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}


def _mirror_path(root: Path, bucket: str, key: str) -> Path:
    # Quote each segment so keys like "../x" or "a//b" cannot escape the mirror.
    parts = [urllib.parse.quote(p, safe="") or "%00" for p in key.split("/")]
    parts = [p if p not in (".", "..") else urllib.parse.quote(p, safe="").replace(".", "%2E") for p in parts]
    return root / bucket / "objects" / Path(*parts)


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
        self._restoring = threading.local()
        self._completing = moto_ext.MultipartCompletion()
        self._undo: list[Callable[[], None]] = []

    @property
    def backend(self) -> Any:
        return s3_backends[self.account]["aws"]

    def start(self) -> None:
        # Every request lands in the assembly's account, whatever access key the client uses
        # (moto would otherwise derive an account from the key); the twin owns this process.
        previous = os.environ.get("MOTO_ACCOUNT_ID")
        os.environ["MOTO_ACCOUNT_ID"] = self.account
        self._undo = [
            lambda: _restore_env("MOTO_ACCOUNT_ID", previous),
            moto_ext.on_s3_change(self.backend, self._send_event),
            self._completing.install(self.backend),
        ]
        self.app = create_backend_app("s3")

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
        base = self.root / bucket / "objects"
        if not base.is_dir():
            return 0
        self._restoring.active = True
        count = 0
        try:
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                rel = path.relative_to(base).parts
                key = "/".join("" if p == "%00" else urllib.parse.unquote(p) for p in rel)
                self.backend.put_object(bucket, key, path.read_bytes(), disable_notification=True)
                count += 1
        finally:
            self._restoring.active = False
        return count

    # -- moto's notification hook -------------------------------------------------
    def _send_event(self, account_id: str, name: str, bucket: Any, key: Any) -> None:
        if getattr(self._restoring, "active", False):
            return
        if name == "s3:ObjectCreated:Put" and self._completing.active:
            return
        if name.startswith("s3:ObjectCreated:"):
            self._persist(bucket.name, key.name, key.value)
            detail_type = "Object Created"
        elif name.startswith("s3:ObjectRemoved:"):
            self._unpersist(bucket.name, key.name)
            detail_type = "Object Deleted"
        else:
            return
        if bucket.name in self.eventbridge_buckets:
            self.on_event(self._event(detail_type, name, bucket, key))  # must not block: it queues

    def _persist(self, bucket: str, key: str, value: bytes) -> None:
        path = _mirror_path(self.root, bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(value)
        tmp.replace(path)

    def _unpersist(self, bucket: str, key: str) -> None:
        _mirror_path(self.root, bucket, key).unlink(missing_ok=True)

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


def _restore_env(name: str, value: str | None) -> None:
    """Leave the process environment as the service found it (moto-mocked code run later in the
    same process, tests above all, would otherwise land in the twin's account)."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
