"""A validation that cannot complete leaves a trace; retries of one execution do the work once (moto S3)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from mlops.s3io import S3Location, put_json
from mlops.services.fates import Fate, FateStore
from mlops.services.validation import DatasetValidator, ValidationRequest, remove_upload
from mlops.services.validation_errors import record_validation_error
from mlops.settings import model_config

from .test_validation_handler import BUCKETS, MODEL, _csv, _json, _keys, _load_handler, _upload

STARTED = "2026-12-07T17:49:28.123Z"  # $$.Execution.StartTime
ERROR = "Runtime.ExitError"
CAUSE = '{"errorMessage": "RequestId: r-1 Error: Runtime exited with error: signal: killed"}'


@pytest.fixture
def buckets(s3: Any) -> Any:
    for name in (BUCKETS.incoming, BUCKETS.validated, BUCKETS.artifacts, BUCKETS.quarantine):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3


def _started(req: ValidationRequest, execution: str = "exec-1") -> ValidationRequest:
    return dataclasses.replace(req, execution_id=execution, execution_started=STARTED)


def _versions(s3: Any, key: str) -> tuple[int, int]:
    """(object versions, delete markers) of an incoming key."""
    found = s3.list_object_versions(Bucket=BUCKETS.incoming, Prefix=key)
    return len(found.get("Versions", [])), len(found.get("DeleteMarkers", []))


def test_an_errored_object_gets_a_report_a_quarantined_copy_and_a_fate(buckets: Any) -> None:
    key = f"incoming/{MODEL}/crashes.csv"
    body = _csv("good")
    req = _started(_upload(buckets, key, body))
    out = record_validation_error(buckets, BUCKETS, req, ERROR, CAUSE)

    version = out["dataset_version"]
    assert version == f"20261207T174928Z-{req.source_id[:12]}"
    assert out["status"] == "errored" and out["model"] == MODEL and out["error"] == ERROR
    assert out["source_key"] == key and out["source_version_id"] == req.version_id
    report = _json(buckets, out["report_uri"])
    assert out["report_uri"] == f"s3://{BUCKETS.artifacts}/reports/{MODEL}/{version}/validation.json"
    assert report["status"] == "errored" and report["error"] == ERROR and report["cause"] == CAUSE
    assert report["source"]["key"] == key and report["source"]["version_id"] == req.version_id
    assert report["execution_id"] == "exec-1"
    text = buckets.get_object(Bucket=BUCKETS.artifacts, Key=f"reports/{MODEL}/{version}/validation.txt")["Body"]
    assert "signal: killed" in text.read().decode() and "Runtime.ExitError" in out["summary"]
    # quarantined as a failed validation is: the copy, the report beside it, and out of incoming
    assert out["quarantine_uri"] == f"s3://{BUCKETS.quarantine}/quarantine/{MODEL}/{version}/crashes.csv"
    copied = buckets.get_object(Bucket=BUCKETS.quarantine, Key=f"quarantine/{MODEL}/{version}/crashes.csv")
    assert copied["Body"].read() == body
    assert _json(buckets, f"s3://{BUCKETS.quarantine}/quarantine/{MODEL}/{version}/report.json")["error"] == ERROR
    assert _keys(buckets, BUCKETS.incoming) == [] and _versions(buckets, key) == (1, 1)  # the version stays
    fate = FateStore(buckets, BUCKETS.artifacts).get(MODEL, version)
    assert fate is not None and fate["state"] == Fate.ERRORED and "could not complete" in fate["detail"]
    assert fate["dataset"]["source_version_id"] == req.version_id


def test_recording_twice_quarantines_and_records_once(buckets: Any) -> None:
    key = f"incoming/{MODEL}/twice.csv"
    req = _started(_upload(buckets, key, _csv("good")))
    first = record_validation_error(buckets, BUCKETS, req, ERROR, CAUSE)
    again = record_validation_error(buckets, BUCKETS, req, ERROR, CAUSE)  # the record step retried
    assert again == first
    assert len(_keys(buckets, BUCKETS.quarantine)) == 2  # one copy and its report
    assert _versions(buckets, key) == (1, 1)  # no second delete marker
    fate = FateStore(buckets, BUCKETS.artifacts).get(MODEL, first["dataset_version"])
    assert fate is not None and len(fate["history"]) == 1


def test_a_later_delivery_of_an_errored_object_does_not_validate_it_again(buckets: Any) -> None:
    req = _started(_upload(buckets, f"incoming/{MODEL}/redelivered.csv", _csv("good")))
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    assert validator._claim(req, req.source_id) is None  # the crashed run took the lock
    record_validation_error(buckets, BUCKETS, req, ERROR, CAUSE)
    out = validator.validate(_started(req, "exec-2"))
    assert out["duplicate"] is True and out["status"] == "errored"
    assert _keys(buckets, BUCKETS.validated) == []


def test_a_dataset_folder_is_reported_and_left_in_place(buckets: Any) -> None:
    part = _upload(buckets, f"incoming/{MODEL}/daily/part-00000.csv", _csv("good"))
    marker = _started(_upload(buckets, f"incoming/{MODEL}/daily/_SUCCESS", b""))
    out = record_validation_error(buckets, BUCKETS, marker, "Sandbox.Timedout", "Task timed out after 900.00 seconds")
    assert out["quarantine_uri"] is None and "left in place" in out["summary"]
    assert _keys(buckets, BUCKETS.quarantine) == []
    assert _keys(buckets, BUCKETS.incoming) == sorted([part.key, marker.key])
    assert _json(buckets, out["report_uri"])["cause"] == "Task timed out after 900.00 seconds"


def test_an_object_version_that_is_gone_is_reported(buckets: Any) -> None:
    req = _started(_upload(buckets, f"incoming/{MODEL}/gone.csv", _csv("good")))
    buckets.delete_object(Bucket=BUCKETS.incoming, Key=req.key, VersionId=req.version_id)
    out = record_validation_error(buckets, BUCKETS, req, ERROR, CAUSE)
    assert out["quarantine_uri"] is None and "no longer exists" in out["summary"]
    assert _json(buckets, out["report_uri"])["status"] == "errored"


def test_a_newer_upload_under_the_same_key_is_not_removed(buckets: Any) -> None:
    old = _upload(buckets, f"incoming/{MODEL}/same-key.csv", _csv("good"))
    _upload(buckets, old.key, _csv("bad"))
    assert remove_upload(buckets, BUCKETS.incoming, old.key, old.version_id) is False
    assert _keys(buckets, BUCKETS.incoming) == [old.key]


def test_a_retry_after_a_crash_mid_quarantine_writes_the_same_keys(buckets: Any) -> None:
    key = f"incoming/{MODEL}/bad-crash.csv"
    req = _started(_upload(buckets, key, _csv("bad")))
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    first = validator.validate(req)
    assert first["status"] == "failed"
    quarantined = _keys(buckets, BUCKETS.quarantine)
    # the run "crashed" after quarantining, before its lock said done: Step Functions retries it
    claim = {"state": "started", "execution_id": "exec-1", "started_at": 0, "source": key}
    put_json(buckets, S3Location(BUCKETS.artifacts, f"locks/validation/{req.source_id}.json"), claim)
    again = validator.validate(req)
    assert again["duplicate"] is False and again["dataset_version"] == first["dataset_version"]
    assert _keys(buckets, BUCKETS.quarantine) == quarantined  # the same keys, nothing twice
    assert _versions(buckets, key) == (1, 1)
    fate = FateStore(buckets, BUCKETS.artifacts).get(MODEL, first["dataset_version"])
    assert fate is not None and fate["state"] == Fate.QUARANTINED and len(fate["history"]) == 1


def test_a_retry_after_the_run_finished_returns_its_result_to_route_on(buckets: Any) -> None:
    req = _started(_upload(buckets, f"incoming/{MODEL}/finished.csv", _csv("good")))
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    first = validator.validate(req)
    again = validator.validate(req)  # crashed after the lock said done: still publishes, not "already validated"
    assert again == first and again["duplicate"] is False
    assert validator.validate(_started(req, "exec-2"))["duplicate"] is True  # another execution is a duplicate


def test_validate_records_each_datasets_first_fate(buckets: Any) -> None:
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    good = validator.validate(_upload(buckets, f"incoming/{MODEL}/good.csv", _csv("good")))
    bad = validator.validate(_upload(buckets, f"incoming/{MODEL}/bad.csv", _csv("bad")))
    store = FateStore(buckets, BUCKETS.artifacts)
    assert store.get(MODEL, good["dataset_version"])["state"] == Fate.VALIDATED  # type: ignore[index]
    quarantined = store.get(MODEL, bad["dataset_version"])
    assert quarantined is not None and quarantined["state"] == Fate.QUARANTINED
    assert quarantined["dataset"]["quarantine_uri"] == bad["quarantine_uri"]


def test_record_error_handler_parses_the_state_machine_payload(buckets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for role in ("incoming", "validated", "artifacts", "quarantine"):
        monkeypatch.setenv(f"{role.upper()}_BUCKET", getattr(BUCKETS, role))
    handler = _load_handler()
    req = _started(_upload(buckets, f"incoming/{MODEL}/via-handler.csv", _csv("good")))
    context = type("Context", (), {"function_name": "record", "memory_limit_in_mb": 512, "aws_request_id": "r"})()
    context.invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:record"  # type: ignore[attr-defined]
    out = handler.record_error({**req.__dict__, "error": ERROR, "cause": CAUSE}, context)
    assert out["status"] == "errored" and out["model"] == MODEL and out["quarantine_uri"]
    json.dumps(out)  # the event's detail must be JSON
