"""When validation cannot complete, leave a trace: report, quarantine, fate, lock.

The validation state machine calls this (through the RecordValidationError Lambda) after
the validate Lambda failed for good: it crashed (``Runtime.ExitError``), timed out or ran out
of memory on every retry, or raised an error that a retry cannot fix. The object then gets
what a failed validation gets, with the error in place of the violations:

- a report ``reports/<model>/<version>/validation.json`` (+ ``.txt``) with the error, its
  cause, the object key and version id, and the execution;
- a single uploaded object is moved to ``quarantine/<model>/<version>/`` with the report (copy
  first, then a plain delete: the version stays recoverable); the parts of a dataset folder
  stay where they are (the report says so), as an incomplete dataset's do;
- the dataset's fate ``errored``;
- the object version's validation lock is closed with this result, so a later delivery of the
  same event answers "already validated" instead of validating (and quarantining) again.

``<version>`` is the execution's start time and the object version's identity, so a retry of
this step writes the same keys again: nothing is quarantined or recorded twice.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from mlops.s3io import (
    S3Location,
    copy_object,
    error_code,
    get_json,
    put_json,
    put_json_if_absent,
    replace_json_if_unchanged,
)
from mlops.services import parts as P
from mlops.services.fates import Fate, FateStore
from mlops.services.validation import INCOMING_KEY_RE, Buckets, ValidationRequest, dataset_version, remove_upload

CAUSE_IN_SUMMARY = 500  # characters of the cause in the summary; the report keeps all of it


def record_validation_error(
    s3: Any, buckets: Buckets, req: ValidationRequest, error: str, cause: str
) -> dict[str, Any]:
    """File the error for ``req``'s object version; the result names the report and the quarantine."""
    match = INCOMING_KEY_RE.match(req.key)
    model = match["model"] if match else "_unknown"
    name = match["name"] if match else req.key.rsplit("/", 1)[-1]
    version = dataset_version(req.started, req.source_id)
    source_uri = f"s3://{req.bucket}/{req.key}"
    report_loc = S3Location(buckets.artifacts, f"reports/{model}/{version}/validation.json")
    found = P.dataset_key(model, name) if match else None
    quarantine_uri = None
    if found is not None and (found.is_marker or P.is_part(req.key)):
        where = f"the dataset's files were left in place under s3://{req.bucket}/{found.prefix}"
    else:
        dest = S3Location(buckets.quarantine, f"quarantine/{model}/{version}/{name.replace('/', '_')}")
        if _quarantine(s3, req, dest):
            quarantine_uri, where = dest.uri, f"the object was moved to {dest.uri}"
        else:
            where = "the object version no longer exists: nothing to quarantine"
    message = (
        f"validation of {source_uri} (version {req.version_id}) could not complete: {error}: {_short(cause)}; {where}"
    )
    summary = f"ERRORED: {message}\nreport: {report_loc.uri}"
    report = {
        "model": model,
        "dataset_version": version,
        "status": "errored",
        "error": error,
        "cause": cause,
        "source": {"uri": source_uri, "key": req.key, "version_id": req.version_id, "etag": req.etag, "size": req.size},
        "execution_id": req.execution_id,
        "started_at": req.started.isoformat(),
        "violations": [],
        "report_uri": report_loc.uri,
        "quarantine_uri": quarantine_uri,
        "summary": summary,
    }
    if quarantine_uri:
        put_json(s3, S3Location(buckets.quarantine, f"quarantine/{model}/{version}/report.json"), report)
    put_json(s3, report_loc, report)
    s3.put_object(
        Bucket=report_loc.bucket,
        Key=report_loc.key.replace(".json", ".txt"),
        Body=summary.encode(),
        ContentType="text/plain; charset=utf-8",
    )
    result = {
        "status": "errored",
        "model": model,
        "dataset_version": version,
        "error": error,
        "summary": summary,
        "report_uri": report_loc.uri,
        "quarantine_uri": quarantine_uri,
        "source_uri": source_uri,
        "source_key": req.key,
        "source_version_id": req.version_id,
    }
    FateStore(s3, buckets.artifacts).change(model, version, Fate.ERRORED, summary, dataset=result)
    if found is None:
        _close_lock(s3, buckets, req, result)
    return result


def _quarantine(s3: Any, req: ValidationRequest, dest: S3Location) -> bool:
    """Copy the object version to quarantine, then remove it from incoming. False if the version is gone."""
    try:
        copy_object(s3, S3Location(req.bucket, req.key), req.version_id, dest)
    except ClientError as exc:
        if error_code(exc) not in ("404", "NoSuchKey", "NoSuchVersion", "NotFound"):
            raise
        return False
    remove_upload(s3, req.bucket, req.key, req.version_id)
    return True


def _close_lock(s3: Any, buckets: Buckets, req: ValidationRequest, result: dict[str, Any]) -> None:
    """Mark the object version's validation lock done with the errored result (a finished run's stays)."""
    lock = S3Location(buckets.artifacts, f"locks/validation/{req.source_id}.json")
    done = {"state": "done", "execution_id": req.execution_id, "finished_at": time.time(), "result": result}
    for _ in range(3):
        held = get_json(s3, lock)
        if held is None:
            if put_json_if_absent(s3, lock, done):
                return
            continue
        state, etag = held
        if state.get("state") == "done" or replace_json_if_unchanged(s3, lock, done, etag):
            return


def _short(cause: str) -> str:
    return cause if len(cause) <= CAUSE_IN_SUMMARY else cause[:CAUSE_IN_SUMMARY] + "..."
