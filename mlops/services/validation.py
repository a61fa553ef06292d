"""Validate one uploaded object against its model's contract and file the result.

Called by the validation Lambda (one object per state machine execution). The flow:

1. Claim the object version with a lock written by an S3 conditional write, so the
   same S3 event delivered twice (or two executions racing) validates once.
2. Stream the object to local disk, hashing it, and run the contract engine.
3. Write the report (JSON + text summary) to the artifacts bucket.
4. Passed: copy the data and its statistical profile to ``validated/<model>/<version>/``.
   Failed: copy the data and the report to quarantine, then delete it from incoming
   (the bucket is versioned, so the original version stays recoverable). Nothing is
   ever deleted before its copy exists.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops.config import ConfigError, ModelConfig
from mlops.core.contract import ValidationResult, Violation, validate_file
from mlops.s3io import (
    S3Location,
    copy_object,
    download_with_sha256,
    get_json,
    put_json,
    put_json_if_absent,
    replace_json_if_unchanged,
)

INCOMING_KEY_RE = re.compile(r"^incoming/(?P<model>[^/]+)/(?P<name>.+)$")
# A lock older than this belongs to a crashed run (Lambda timeout is 15 minutes).
STALE_LOCK_SECONDS = 16 * 60


@dataclass(frozen=True)
class Buckets:
    incoming: str
    validated: str
    artifacts: str
    quarantine: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Buckets:
        env = dict(os.environ) if env is None else env
        names = {f: env.get(f"{f.upper()}_BUCKET", "") for f in ("incoming", "validated", "artifacts", "quarantine")}
        missing = [f"{k.upper()}_BUCKET" for k, v in names.items() if not v]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(**names)


@dataclass(frozen=True)
class ValidationRequest:
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    event_id: str | None = None
    execution_id: str | None = None

    @property
    def source_id(self) -> str:
        """Identity of the uploaded object version: the same for duplicate deliveries."""
        ident = f"{self.bucket}/{self.key}#{self.version_id or self.etag or ''}"
        return hashlib.sha256(ident.encode()).hexdigest()[:24]


ConfigLookup = Callable[[str], ModelConfig]


def dataset_version(now: datetime, sha256: str) -> str:
    """Sortable and content-addressed: ``20261124T211500Z-3f2a9c1d0b7e``."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{sha256[:12]}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DatasetValidator:
    def __init__(self, s3: Any, buckets: Buckets, configs: ConfigLookup, workdir: str | None = None) -> None:
        self.s3 = s3
        self.buckets = buckets
        self.configs = configs
        self.workdir = workdir

    # -- idempotency -------------------------------------------------------------
    def _lock(self, req: ValidationRequest) -> S3Location:
        return S3Location(self.buckets.artifacts, f"locks/validation/{req.source_id}.json")

    def _claim(self, req: ValidationRequest) -> dict[str, Any] | None:
        """Take the lock for this object version. Returns the earlier result if one exists."""
        lock = self._lock(req)
        claim = {"state": "started", "execution_id": req.execution_id, "started_at": time.time(), "source": req.key}
        if put_json_if_absent(self.s3, lock, claim):
            return None
        found = get_json(self.s3, lock)
        if found is None:  # removed between our two calls: try once more
            return None if put_json_if_absent(self.s3, lock, claim) else {"status": "in_progress"}
        held, etag = found
        if held.get("state") == "done":
            return held["result"]
        same_execution = req.execution_id is not None and held.get("execution_id") == req.execution_id
        stale = time.time() - float(held.get("started_at", 0)) > STALE_LOCK_SECONDS
        if (same_execution or stale) and replace_json_if_unchanged(self.s3, lock, claim, etag):
            return None  # a retry of our own execution, or a crashed run: take over
        return {"status": "in_progress"}

    def _release(self, req: ValidationRequest, result: dict[str, Any]) -> None:
        put_json(self.s3, self._lock(req), {"state": "done", "finished_at": time.time(), "result": result})

    # -- the flow ------------------------------------------------------------------
    def validate(self, req: ValidationRequest) -> dict[str, Any]:
        earlier = self._claim(req)
        if earlier is not None:
            return {**earlier, "duplicate": True}
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            result = self._validate_claimed(req, Path(tmp))
        self._release(req, result)
        return {**result, "duplicate": False}

    def _validate_claimed(self, req: ValidationRequest, tmp: Path) -> dict[str, Any]:
        started = _utcnow()
        match = INCOMING_KEY_RE.match(req.key)
        model = match["model"] if match else "_unknown"
        filename = match["name"].replace("/", "_") if match else req.key.rsplit("/", 1)[-1]
        config, problem = self._config_for(model, match is not None, req.key)

        local = tmp / "data"
        sha256 = ""
        result: ValidationResult | None = None
        if problem is None and config is not None:
            too_big = self._size_problem(req, config)
            if too_big:
                problem = too_big
            else:
                sha256 = download_with_sha256(self.s3, req.bucket, req.key, req.version_id, local)
                result = validate_file(local, config.dataset)
        if not sha256:
            sha256 = hashlib.sha256(f"{req.key}#{req.version_id}#{req.etag}".encode()).hexdigest()
        version = dataset_version(started, sha256)

        violations = result.violations if result else [problem] if problem else []
        passed = bool(result and result.passed)
        report_loc = S3Location(self.buckets.artifacts, f"reports/{model}/{version}/validation.json")
        report: dict[str, Any] = {
            "model": model,
            "dataset_version": version,
            "status": "passed" if passed else "failed",
            "source": {
                "uri": f"s3://{req.bucket}/{req.key}",
                "version_id": req.version_id,
                "etag": req.etag,
                "size": req.size,
                "sha256": sha256 if local.exists() else None,
            },
            "rows": result.rows if result else 0,
            "columns": result.columns if result else [],
            "violations": [v.to_dict() for v in violations],
            "started_at": started.isoformat(),
            "duration_s": round((_utcnow() - started).total_seconds(), 3),
            "report_uri": report_loc.uri,
            "validated_uri": None,
            "profile_uri": None,
            "quarantine_uri": None,
        }
        summary = _summary(report, result)
        if passed and result is not None:
            self._promote(req, report, result, model, version)
        else:
            self._quarantine(req, report, model, version, filename)
        put_json(self.s3, report_loc, report)
        self.s3.put_object(
            Bucket=report_loc.bucket,
            Key=report_loc.key.replace(".json", ".txt"),
            Body=summary.encode(),
            ContentType="text/plain; charset=utf-8",
        )
        return {
            "status": report["status"],
            "model": model,
            "dataset_version": version,
            "rows": report["rows"],
            "summary": summary,
            "report_uri": report["report_uri"],
            "validated_uri": report["validated_uri"],
            "profile_uri": report["profile_uri"],
            "quarantine_uri": report["quarantine_uri"],
            "sha256": report["source"]["sha256"],
            "source_uri": report["source"]["uri"],
            "source_version_id": req.version_id,
        }

    def _config_for(self, model: str, key_ok: bool, key: str) -> tuple[ModelConfig | None, Violation | None]:
        if not key_ok:
            msg = f"object key {key!r} is not of the form incoming/<model>/<file>"
            return None, Violation("unknown_model", None, 1, msg, [])
        try:
            return self.configs(model), None
        except (KeyError, ConfigError) as exc:
            msg = f"no model config for {model!r} ({exc}); upload under incoming/<model>/ for a configured model"
            return None, Violation("unknown_model", None, 1, msg, [])

    def _size_problem(self, req: ValidationRequest, config: ModelConfig) -> Violation | None:
        size = req.size
        if size is None:
            extra = {"VersionId": req.version_id} if req.version_id else {}
            size = self.s3.head_object(Bucket=req.bucket, Key=req.key, **extra)["ContentLength"]
        if size > config.dataset.max_bytes:
            msg = f"file is {size:,} bytes, over the contract's max_bytes of {config.dataset.max_bytes:,}"
            return Violation("size", None, 1, msg, [])
        return None

    def _promote(
        self, req: ValidationRequest, report: dict[str, Any], result: ValidationResult, model: str, version: str
    ) -> None:
        prefix = f"validated/{model}/{version}"
        data = S3Location(self.buckets.validated, f"{prefix}/data.csv")
        profile = S3Location(self.buckets.validated, f"{prefix}/profile.json")
        copy_object(self.s3, S3Location(req.bucket, req.key), req.version_id, data)
        put_json(self.s3, profile, result.profile)
        report["validated_uri"] = data.uri
        report["profile_uri"] = profile.uri
        manifest = {k: report[k] for k in ("model", "dataset_version", "source", "rows", "columns", "report_uri")}
        put_json(self.s3, S3Location(self.buckets.validated, f"{prefix}/manifest.json"), manifest)

    def _quarantine(self, req: ValidationRequest, report: dict[str, Any], model: str, version: str, name: str) -> None:
        prefix = f"quarantine/{model}/{version}"
        dest = S3Location(self.buckets.quarantine, f"{prefix}/{name}")
        copy_object(self.s3, S3Location(req.bucket, req.key), req.version_id, dest)
        report["quarantine_uri"] = dest.uri
        put_json(self.s3, S3Location(self.buckets.quarantine, f"{prefix}/report.json"), report)
        # Only after the copy exists: a plain delete leaves a delete marker, the version stays.
        self.s3.delete_object(Bucket=req.bucket, Key=req.key)


def _summary(report: dict[str, Any], result: ValidationResult | None) -> str:
    head = (
        f"{report['status'].upper()}: {report['source']['uri']} for model {report['model']} "
        f"(dataset version {report['dataset_version']}, {report['rows']:,} rows)"
    )
    lines = [head]
    if result is not None and not result.passed:
        lines.append(result.summary())
    elif result is None:
        lines += [f"- {v['message']}" for v in report["violations"]]
    lines.append(f"report: {report['report_uri']}")
    return "\n".join(lines)
