"""Validate one uploaded dataset against its model's contract and file the result.

Called by the validation Lambda (one S3 event per state machine execution). A dataset is
one object directly under ``incoming/<model>/``, or the part files of a folder
``incoming/<model>/<dataset>/`` committed by a ``_SUCCESS`` marker or a ``_manifest.json``
(``mlops.services.parts``). The flow:

1. Claim the dataset version (the object version, or every part's version) with a lock
   written by an S3 conditional write, so the same S3 event delivered twice (or two
   executions racing, or both markers) validates once.
2. Stream the object(s) to local disk, hashing each, and run the contract engine
   (any accepted format; several parts are validated as one table).
3. Write the report (JSON + text summary) to the artifacts bucket.
4. Passed: put the validated copy, canonical CSV (the upload itself when it already is
   canonical CSV, else the engine's rewrite), and its statistical profile in
   ``validated/<model>/<version>/``. Failed: copy the object(s) and the report to
   quarantine, then delete them from incoming (the bucket is versioned, so the original
   versions stay recoverable). Nothing is ever deleted before its copy exists.

A part file's own event validates nothing: the first part of a folder starts a watch
(``status: waiting, watch: true``), the state machine waits ``commit_timeout_minutes``
and calls ``check_commit``, which reports the dataset as incomplete if no marker came.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from mlops import env_names as E
from mlops.config import ConfigError, ModelConfig
from mlops.core.contract import Part, ValidationResult, Violation, validate_dataset
from mlops.s3io import (
    S3Location,
    copy_object,
    download_with_sha256,
    error_code,
    get_json,
    put_json,
    put_json_if_absent,
    replace_json_if_unchanged,
)
from mlops.services import parts as P
from mlops.services.fates import record_validation

INCOMING_KEY_RE = re.compile(r"^incoming/(?P<model>[^/]+)/(?P<name>.+)$")
# A lock older than this belongs to a crashed run (Lambda timeout is 15 minutes).
STALE_LOCK_SECONDS = 16 * 60
PARTS_IN_RESULT = 100  # lineage in the state machine payload; the validated manifest lists them all


@dataclass(frozen=True)
class Buckets:
    incoming: str
    validated: str
    artifacts: str
    quarantine: str

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Buckets:
        env = dict(os.environ) if env is None else env
        variables = {
            "incoming": E.INCOMING_BUCKET,
            "validated": E.VALIDATED_BUCKET,
            "artifacts": E.ARTIFACTS_BUCKET,
            "quarantine": E.QUARANTINE_BUCKET,
        }
        names = {field: env.get(variable, "") for field, variable in variables.items()}
        missing = [variables[k] for k, v in names.items() if not v]
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
    # The execution's start ($$.Execution.StartTime): the dataset version's time, so every retry of
    # one execution names the same version and writes to the same places.
    execution_started: str | None = None

    @property
    def started(self) -> datetime:
        if self.execution_started:
            return datetime.fromisoformat(self.execution_started).astimezone(UTC)
        return _utcnow()

    @property
    def source_id(self) -> str:
        """Identity of the uploaded object version: the same for duplicate deliveries."""
        ident = f"{self.bucket}/{self.key}#{self.version_id or self.etag or ''}"
        return hashlib.sha256(ident.encode()).hexdigest()[:24]


ConfigLookup = Callable[[str], ModelConfig]


@dataclass
class _Source:
    """What one validation reads: a single object, or the parts of a committed dataset folder."""

    model: str
    name: str  # file name (single object) or dataset folder name
    uri: str
    bucket: str
    objects: list[P.PartObject]
    marker: str | None = None  # the commit marker's key, for a dataset
    prefix: str | None = None
    problem: Violation | None = None  # found before reading (a manifest naming missing parts...)
    shas: list[str] = field(default_factory=list)

    @property
    def multi(self) -> bool:
        return self.marker is not None

    def part_name(self, key: str) -> str:
        return key[len(self.prefix) :] if self.prefix and key.startswith(self.prefix) else key.rsplit("/", 1)[-1]

    def source_id(self) -> str:
        ident = "\n".join(f"{self.bucket}/{o.key}#{o.version_id or o.etag}" for o in self.objects) or self.uri
        return hashlib.sha256(ident.encode()).hexdigest()[:24]


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
    def _lock(self, source_id: str) -> S3Location:
        return S3Location(self.buckets.artifacts, f"locks/validation/{source_id}.json")

    def _claim(self, req: ValidationRequest, source_id: str) -> dict[str, Any] | None:
        """Take the lock for this dataset version. Returns the earlier result if one exists."""
        lock = self._lock(source_id)
        claim = {"state": "started", "execution_id": req.execution_id, "started_at": time.time(), "source": req.key}
        if put_json_if_absent(self.s3, lock, claim):
            return None
        found = get_json(self.s3, lock)
        if found is None:  # removed between our two calls: try once more
            return None if put_json_if_absent(self.s3, lock, claim) else {"status": "in_progress"}
        held, etag = found
        if held.get("state") == "done":
            if req.execution_id is not None and held.get("execution_id") == req.execution_id:
                return {**held["result"], "duplicate": False}  # our own run, retried after it finished
            return held["result"]
        same_execution = req.execution_id is not None and held.get("execution_id") == req.execution_id
        stale = time.time() - float(held.get("started_at", 0)) > STALE_LOCK_SECONDS
        if (same_execution or stale) and replace_json_if_unchanged(self.s3, lock, claim, etag):
            return None  # a retry of our own execution, or a crashed run: take over
        return {"status": "in_progress"}

    def _release(self, source_id: str, req: ValidationRequest, result: dict[str, Any]) -> None:
        done = {"state": "done", "execution_id": req.execution_id, "finished_at": time.time(), "result": result}
        put_json(self.s3, self._lock(source_id), done)

    # -- the flow ------------------------------------------------------------------
    def validate(self, req: ValidationRequest) -> dict[str, Any]:
        match = INCOMING_KEY_RE.match(req.key)
        found = P.dataset_key(match["model"], match["name"]) if match else None
        if found is not None and not found.is_marker:
            if found.is_hidden or not P.is_part(req.key):
                return self._ignored(req, found)
            return self._part_arrived(req, found)
        source = self._dataset_source(req, found) if found is not None else self._object_source(req, match)
        source_id = req.source_id if not source.multi else source.source_id()
        earlier = self._claim(req, source_id)
        if earlier is not None:
            return {"duplicate": True, **earlier}
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            result = self._validate_claimed(req, source, Path(tmp))
        # the dataset's first fate, before the lock says done (a retry after a crash records it then)
        record_validation(self.s3, self.buckets.artifacts, result)
        self._release(source_id, req, result)
        return {**result, "duplicate": False}

    def _object_source(self, req: ValidationRequest, match: re.Match[str] | None) -> _Source:
        model = match["model"] if match else "_unknown"
        name = match["name"].replace("/", "_") if match else req.key.rsplit("/", 1)[-1]
        obj = P.PartObject(req.key, req.version_id, req.etag or "", req.size if req.size is not None else -1)
        return _Source(model, name, f"s3://{req.bucket}/{req.key}", req.bucket, [obj])

    def _dataset_source(self, req: ValidationRequest, found: P.DatasetKey) -> _Source:
        """The parts a marker commits: every part under the folder (``_SUCCESS``) or those a manifest names."""
        uri = f"s3://{req.bucket}/{found.prefix}"
        source = _Source(found.model, found.folder, uri, req.bucket, [], marker=req.key, prefix=found.prefix)
        if found.name == P.MANIFEST:
            extra = {"VersionId": req.version_id} if req.version_id else {}
            body = self.s3.get_object(Bucket=req.bucket, Key=req.key, **extra)["Body"].read()
            keys, problem = P.manifest_keys(body, req.bucket, found.prefix)
            if problem:
                source.problem = Violation("manifest", None, 1, problem, [])
                return source
        else:
            keys = [o["Key"] for o in P.list_parts(self.s3, req.bucket, found.prefix)]
        source.objects, missing = P.head_parts(self.s3, req.bucket, keys)
        if missing:
            shown = ", ".join(source.part_name(k) for k in missing[:10])
            msg = f"{req.key} names {len(missing)} part file(s) that do not exist under {found.prefix}: {shown}"
            source.problem = Violation("manifest", None, len(missing), msg, [{"part": k} for k in missing[:5]])
        elif not source.objects:
            msg = f"{req.key} commits the dataset {found.prefix}, but it holds no part files"
            source.problem = Violation("empty_file", None, 1, msg, [])
        return source

    def _validate_claimed(self, req: ValidationRequest, source: _Source, tmp: Path) -> dict[str, Any]:
        started = req.started
        clock = time.monotonic()
        model = source.model
        config, problem = self._config_for(model, model != "_unknown", req.key)
        problem = problem or source.problem

        result: ValidationResult | None = None
        canonical = tmp / "canonical.csv"
        local: list[Path] = []
        if problem is None and config is not None:
            too_big = self._size_problem(req, source, config)
            if too_big:
                problem = too_big
            else:
                for i, obj in enumerate(source.objects):
                    local.append(tmp / f"part-{i:05d}")
                    sha = download_with_sha256(self.s3, source.bucket, obj.key, obj.version_id, local[-1])
                    source.shas.append(sha)
                names = [source.part_name(o.key) for o in source.objects] if source.multi else [source.name]
                parts = [Part(path, name) for path, name in zip(local, names, strict=True)]
                result = validate_dataset(parts, config.dataset, output=canonical)
        if source.multi and source.shas:
            sha256 = P.dataset_sha256(list(zip(source.objects, source.shas, strict=True)))
        elif source.shas:
            sha256 = source.shas[0]
        else:
            sha256 = hashlib.sha256(f"{req.key}#{req.version_id}#{req.etag}".encode()).hexdigest()
        version = dataset_version(started, sha256)

        violations = result.violations if result else [problem] if problem else []
        passed = bool(result and result.passed)
        report_loc = S3Location(self.buckets.artifacts, f"reports/{model}/{version}/validation.json")
        report: dict[str, Any] = {
            "model": model,
            "dataset_version": version,
            "status": "passed" if passed else "failed",
            "source": self._source_record(req, source, sha256 if source.shas else None),
            "format": result.format if result else None,
            "rows": result.rows if result else 0,
            "rows_dropped": result.rows_dropped if result else {},
            "columns": result.columns if result else [],
            "violations": [v.to_dict() for v in violations],
            "started_at": started.isoformat(),
            "duration_s": round(time.monotonic() - clock, 3),
            "report_uri": report_loc.uri,
            "validated_uri": None,
            "profile_uri": None,
            "quarantine_uri": None,
        }
        summary = _summary(report, result)
        if passed and result is not None:
            self._promote(source, report, result, canonical, version)
        elif source.problem is None or source.problem.rule == "empty_file":
            self._quarantine(source, report, version)
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
            "source_version_id": report["source"]["version_id"],
            "source_parts": report["source"].get("parts", [])[:PARTS_IN_RESULT] if source.multi else None,
            "parts": len(source.objects),
            "format": report["format"],
            "rows_dropped": report["rows_dropped"],
        }

    def _source_record(self, req: ValidationRequest, source: _Source, sha256: str | None) -> dict[str, Any]:
        if not source.multi:
            return {
                "uri": source.uri,
                "version_id": req.version_id,
                "etag": req.etag,
                "size": req.size,
                "sha256": sha256,
            }
        shas = source.shas or [None] * len(source.objects)
        return {
            "uri": source.uri,
            "marker": source.marker,
            "marker_version_id": req.version_id,
            "version_id": None,
            "size": sum(o.size for o in source.objects),
            "sha256": sha256,  # over every part's key, version and SHA-256 (parts.dataset_sha256)
            "parts": [o.to_dict() | {"sha256": sha} for o, sha in zip(source.objects, shas, strict=True)],
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

    def _size_problem(self, req: ValidationRequest, source: _Source, config: ModelConfig) -> Violation | None:
        if source.multi:
            size = sum(o.size for o in source.objects)
        else:
            size = req.size
            if size is None:
                extra = {"VersionId": req.version_id} if req.version_id else {}
                size = self.s3.head_object(Bucket=req.bucket, Key=req.key, **extra)["ContentLength"]
        if size > config.dataset.max_bytes:
            what = f"the {len(source.objects)} parts are" if source.multi else "file is"
            msg = f"{what} {size:,} bytes, over the contract's max_bytes of {config.dataset.max_bytes:,}"
            return Violation("size", None, 1, msg, [])
        return None

    def _promote(
        self, source: _Source, report: dict[str, Any], result: ValidationResult, canonical: Path, version: str
    ) -> None:
        prefix = f"validated/{source.model}/{version}"
        data = S3Location(self.buckets.validated, f"{prefix}/data.csv")
        profile = S3Location(self.buckets.validated, f"{prefix}/profile.json")
        if result.canonical == "source":  # the upload is canonical CSV as it is: a server-side copy
            obj = source.objects[0]
            copy_object(self.s3, S3Location(source.bucket, obj.key), obj.version_id, data)
        else:
            self.s3.upload_file(str(canonical), data.bucket, data.key)
        put_json(self.s3, profile, result.profile)
        report["validated_uri"] = data.uri
        report["profile_uri"] = profile.uri
        report["validated_copy"] = "upload copied as is" if result.canonical == "source" else "canonical CSV written"
        keys = ("model", "dataset_version", "source", "format", "rows", "rows_dropped", "columns", "report_uri")
        manifest = {k: report[k] for k in keys}
        put_json(self.s3, S3Location(self.buckets.validated, f"{prefix}/manifest.json"), manifest)

    def _quarantine(self, source: _Source, report: dict[str, Any], version: str) -> None:
        prefix = f"quarantine/{source.model}/{version}"
        moved = [(o.key, o.version_id) for o in source.objects]
        if source.marker:
            moved.append((source.marker, report["source"].get("marker_version_id")))
        for key, version_id in moved:
            name = source.part_name(key) if source.multi else source.name
            dest = S3Location(self.buckets.quarantine, f"{prefix}/{name}")
            copy_object(self.s3, S3Location(source.bucket, key), version_id, dest)
        report["quarantine_uri"] = f"s3://{self.buckets.quarantine}/{prefix}/" if source.multi else dest.uri
        put_json(self.s3, S3Location(self.buckets.quarantine, f"{prefix}/report.json"), report)
        # Only after every copy exists: a plain delete leaves a delete marker, the version stays.
        for key, version_id in moved:
            remove_upload(self.s3, source.bucket, key, version_id)

    # -- part files: wait for the commit marker ------------------------------------------
    def _watch_lock(self, prefix: str) -> S3Location:
        digest = hashlib.sha256(prefix.encode()).hexdigest()[:24]
        return S3Location(self.buckets.artifacts, f"locks/dataset-watch/{digest}.json")

    def _ignored(self, req: ValidationRequest, found: P.DatasetKey) -> dict[str, Any]:
        summary = f"{req.key}: not a part file (names starting with _ or . are bookkeeping); nothing to validate"
        return {"status": "ignored", "duplicate": False, "model": found.model, "summary": summary}

    def _part_arrived(self, req: ValidationRequest, found: P.DatasetKey) -> dict[str, Any]:
        """A part file landed: start the folder's watch unless one runs or the marker is there already."""
        base = {"duplicate": False, "model": found.model, "bucket": req.bucket, "dataset_prefix": found.prefix}
        marker = P.marker_present(self.s3, req.bucket, found.prefix)
        if marker is not None:
            summary = f"{req.key} is a part of {found.prefix}, committed by {marker}: validated with it"
            return {**base, "status": "waiting", "watch": False, "summary": summary}
        try:
            timeout = self.configs(found.model).dataset.commit_timeout_minutes
        except (KeyError, ConfigError):
            timeout = 60  # the marker's validation reports the unknown model
        lock = self._watch_lock(found.prefix)
        claim = {"state": "watching", "prefix": found.prefix, "started_at": time.time(), "timeout_minutes": timeout}
        taken = put_json_if_absent(self.s3, lock, claim)
        if not taken:
            held = get_json(self.s3, lock)
            if held is not None:
                state, etag = held
                expired = time.time() - float(state.get("started_at", 0)) > 60 * state.get("timeout_minutes", 60) + 900
                if state.get("state") == "done" or expired:
                    taken = replace_json_if_unchanged(self.s3, lock, claim, etag)
        if not taken:
            summary = f"{req.key} is a part of {found.prefix}; another execution waits for its commit marker"
            return {**base, "status": "waiting", "watch": False, "summary": summary}
        summary = (
            f"{req.key} is a part of {found.prefix}: waiting up to {timeout} min for {found.prefix}{P.SUCCESS_MARKER} "
            f"or {found.prefix}{P.MANIFEST}"
        )
        return {**base, "status": "waiting", "watch": True, "wait_seconds": timeout * 60, "summary": summary}

    def check_commit(self, bucket: str, prefix: str, model: str) -> dict[str, Any]:
        """After the wait: ``committed`` when a marker came, else an ``incomplete`` report naming the parts."""
        lock = self._watch_lock(prefix)
        put_json(self.s3, lock, {"state": "done", "prefix": prefix, "finished_at": time.time()})
        marker = P.marker_present(self.s3, bucket, prefix)
        base = {"model": model, "dataset_prefix": prefix, "duplicate": False}
        if marker is not None:
            return {**base, "status": "committed", "summary": f"{prefix} was committed by {marker}"}
        parts = P.list_parts(self.s3, bucket, prefix)
        try:
            timeout = self.configs(model).dataset.commit_timeout_minutes
        except (KeyError, ConfigError):
            timeout = 60
        names = [o["Key"][len(prefix) :] for o in parts]
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        message = (
            f"dataset s3://{bucket}/{prefix} has {len(parts)} part file(s) ({shown}) but no {P.SUCCESS_MARKER} "
            f"marker or {P.MANIFEST} after {timeout} min (dataset.commit_timeout_minutes); nothing was validated "
            f"and the parts were left in place: upload {prefix}{P.SUCCESS_MARKER} (or a manifest) to validate them "
            "as one dataset"
        )
        stamp = _utcnow().strftime("%Y%m%dT%H%M%SZ")
        folder = prefix.rstrip("/").rsplit("/", 1)[-1]
        report_loc = S3Location(self.buckets.artifacts, f"reports/{model}/incomplete/{folder}-{stamp}.json")
        violation = Violation("commit_marker", None, len(parts), message, [{"part": n} for n in names[:5]])
        report = {
            "model": model,
            "status": "incomplete",
            "source": {"uri": f"s3://{bucket}/{prefix}", "parts": [o["Key"] for o in parts]},
            "violations": [violation.to_dict()],
            "report_uri": report_loc.uri,
        }
        put_json(self.s3, report_loc, report)
        return {
            **base,
            "status": "incomplete",
            "summary": f"{message}\nreport: {report_loc.uri}",
            "report_uri": report_loc.uri,
        }


def remove_upload(s3: Any, bucket: str, key: str, version_id: str | None) -> bool:
    """Delete ``key`` from incoming if its current version is the one that was copied away.

    A retry finds it already gone (no second delete marker); a newer upload under the same key
    is not ours to remove. True if a delete was sent.
    """
    if version_id is not None:
        try:
            current = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        if current != version_id:
            return False
    s3.delete_object(Bucket=bucket, Key=key)
    return True


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
