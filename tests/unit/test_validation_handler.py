"""The validation Lambda and its service on moto S3: promote, quarantine, idempotency."""

from __future__ import annotations

import importlib.util
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from examples.generate_data import generate
from mlops.services.validation import Buckets, DatasetValidator, ValidationRequest
from mlops.settings import model_config

from ..conftest import ROOT

BUCKETS = Buckets("in-bucket", "validated-bucket", "artifacts-bucket", "quarantine-bucket")
MODEL = "tumor-classifier"


def _load_handler() -> Any:
    spec = importlib.util.spec_from_file_location("validate_handler", ROOT / "functions" / "validate" / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def buckets(s3: Any) -> Any:
    for name in (BUCKETS.incoming, BUCKETS.validated, BUCKETS.artifacts, BUCKETS.quarantine):
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3


def _upload(s3: Any, key: str, body: bytes) -> ValidationRequest:
    put = s3.put_object(Bucket=BUCKETS.incoming, Key=key, Body=body)
    return ValidationRequest(
        bucket=BUCKETS.incoming,
        key=key,
        version_id=put.get("VersionId"),
        etag=put["ETag"].strip('"'),
        size=len(body),
        event_id="evt-1",
        execution_id="exec-1",
    )


def _csv(variant: str, rows: int = 400) -> bytes:
    return generate(MODEL, variant, rows, seed=3).to_csv(index=False, lineterminator="\n").encode()


def _json(s3: Any, uri: str) -> Any:
    bucket, key = uri[5:].split("/", 1)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _keys(s3: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_good_file_is_promoted_with_profile_and_report(buckets: Any) -> None:
    body = _csv("good")
    req = _upload(buckets, f"incoming/{MODEL}/good.csv", body)
    out = DatasetValidator(buckets, BUCKETS, model_config).validate(req)

    assert out["status"] == "passed" and out["duplicate"] is False
    assert out["rows"] == 400
    version = out["dataset_version"]
    assert out["validated_uri"] == f"s3://{BUCKETS.validated}/validated/{MODEL}/{version}/data.csv"
    data = buckets.get_object(Bucket=BUCKETS.validated, Key=f"validated/{MODEL}/{version}/data.csv")["Body"].read()
    assert data == body
    profile = _json(buckets, out["profile_uri"])
    assert profile["rows"] == 400 and "mean_radius" in profile["features"]
    report = _json(buckets, out["report_uri"])
    assert report["status"] == "passed" and report["violations"] == []
    assert report["source"]["version_id"] == req.version_id and len(report["source"]["sha256"]) == 64
    manifest = _json(buckets, f"s3://{BUCKETS.validated}/validated/{MODEL}/{version}/manifest.json")
    assert manifest["source"]["sha256"] == report["source"]["sha256"]
    # the upload itself stays where it was; nothing went to quarantine
    assert _keys(buckets, BUCKETS.incoming) == [f"incoming/{MODEL}/good.csv"]
    assert _keys(buckets, BUCKETS.quarantine) == []


def test_bad_file_is_quarantined_with_report_and_never_lost(buckets: Any) -> None:
    body = _csv("bad")
    req = _upload(buckets, f"incoming/{MODEL}/bad.csv", body)
    out = DatasetValidator(buckets, BUCKETS, model_config).validate(req)

    assert out["status"] == "failed"
    assert out["validated_uri"] is None and out["profile_uri"] is None
    version = out["dataset_version"]
    assert _keys(buckets, BUCKETS.quarantine) == [
        f"quarantine/{MODEL}/{version}/bad.csv",
        f"quarantine/{MODEL}/{version}/report.json",
    ]
    moved = buckets.get_object(Bucket=BUCKETS.quarantine, Key=f"quarantine/{MODEL}/{version}/bad.csv")["Body"].read()
    assert moved == body
    assert _keys(buckets, BUCKETS.incoming) == []  # moved out of incoming...
    original = buckets.get_object(Bucket=BUCKETS.incoming, Key=req.key, VersionId=req.version_id)["Body"].read()
    assert original == body  # ...but the version is still recoverable
    report = _json(buckets, out["report_uri"])
    rules = {(v["rule"], v["column"]) for v in report["violations"]}
    assert {("min", "mean_radius"), ("allowed", "clinic"), ("type", "mean_texture")} <= rules
    assert "FAILED" in out["summary"] and "mean_radius" in out["summary"]
    text = buckets.get_object(Bucket=BUCKETS.artifacts, Key=f"reports/{MODEL}/{version}/validation.txt")["Body"]
    assert "mean_radius" in text.read().decode()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/no-such-model/data.csv", "no model config for 'no-such-model'"),
        ("incoming/loose-file.csv", "not of the form incoming/<model>/<file>"),
    ],
)
def test_unknown_model_prefix_is_quarantined(buckets: Any, key: str, expected: str) -> None:
    req = _upload(buckets, key, b"a,b\n1,2\n")
    out = DatasetValidator(buckets, BUCKETS, model_config).validate(req)
    assert out["status"] == "failed" and out["model"] == ("no-such-model" if "no-such" in key else "_unknown")
    report = _json(buckets, out["report_uri"])
    assert report["violations"][0]["rule"] == "unknown_model"
    assert expected in report["violations"][0]["message"]
    assert out["quarantine_uri"] and _keys(buckets, BUCKETS.incoming) == []


def test_file_over_max_bytes_is_rejected_before_download(buckets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    req = _upload(buckets, f"incoming/{MODEL}/huge.csv", _csv("good", 50))
    small = model_config(MODEL).model_copy(
        update={"dataset": model_config(MODEL).dataset.model_copy(update={"max_bytes": 100})}
    )
    validator = DatasetValidator(buckets, BUCKETS, lambda name: small)
    monkeypatch.setattr("mlops.services.validation.download_with_sha256", pytest.fail)
    out = validator.validate(req)
    assert out["status"] == "failed"
    assert "over the contract's max_bytes of 100" in out["summary"]


def test_same_event_twice_validates_once(buckets: Any) -> None:
    req = _upload(buckets, f"incoming/{MODEL}/twice.csv", _csv("good"))
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    first = validator.validate(req)
    second = validator.validate(ValidationRequest(**{**req.__dict__, "execution_id": "exec-2", "event_id": "e2"}))
    assert second["duplicate"] is True
    assert second["dataset_version"] == first["dataset_version"]
    assert len(_keys(buckets, BUCKETS.validated)) == 3  # data, profile, manifest: one copy only


def test_concurrent_duplicate_deliveries_do_one_validation(buckets: Any) -> None:
    req = _upload(buckets, f"incoming/{MODEL}/race.csv", _csv("good"))
    results: list[dict[str, Any]] = []

    def run(execution: str) -> None:
        validator = DatasetValidator(buckets, BUCKETS, model_config)
        results.append(validator.validate(ValidationRequest(**{**req.__dict__, "execution_id": execution})))

    threads = [threading.Thread(target=run, args=(f"exec-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["duplicate"] for r in results) == [False, True, True, True]
    assert len(_keys(buckets, BUCKETS.validated)) == 3


def test_retry_of_the_same_execution_takes_over_its_lock(buckets: Any) -> None:
    req = _upload(buckets, f"incoming/{MODEL}/retry.csv", _csv("good"))
    validator = DatasetValidator(buckets, BUCKETS, model_config)
    assert validator._claim(req, req.source_id) is None  # first attempt took the lock, then "crashed"
    out = validator.validate(req)  # Step Functions retries the same execution
    assert out["status"] == "passed" and out["duplicate"] is False
    other = validator.validate(ValidationRequest(**{**req.__dict__, "execution_id": "exec-9"}))
    assert other["duplicate"] is True


def test_handler_parses_the_state_machine_payload(buckets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for role in ("incoming", "validated", "artifacts", "quarantine"):
        monkeypatch.setenv(f"{role.upper()}_BUCKET", getattr(BUCKETS, role))
    handler = _load_handler()
    req = _upload(buckets, f"incoming/{MODEL}/via-handler.csv", _csv("good"))
    event = {k: v for k, v in req.__dict__.items()}
    context = SimpleNamespace(
        function_name="validate",
        memory_limit_in_mb=3008,
        invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:validate",
        aws_request_id="req-1",
    )
    out = handler.handler(event, context)
    assert out["status"] == "passed" and out["model"] == MODEL
    json.dumps(out)  # what the state machine routes on must be JSON
    # a duplicate delivery while the first validation still runs: answered, not crashed
    running = _upload(buckets, f"incoming/{MODEL}/running.csv", _csv("good"))
    DatasetValidator(buckets, BUCKETS, model_config)._claim(running, running.source_id)  # held by a running execution
    again = handler.handler({**running.__dict__, "execution_id": "exec-other"}, context)
    assert again == {"status": "in_progress", "duplicate": True}
    with pytest.raises(Exception, match="bucket"):
        handler.handler({"key": "incoming/x/y.csv"}, context)


def test_buckets_from_env_names_what_is_missing() -> None:
    with pytest.raises(RuntimeError, match="QUARANTINE_BUCKET"):
        Buckets.from_env({"INCOMING_BUCKET": "a", "VALIDATED_BUCKET": "b", "ARTIFACTS_BUCKET": "c"})


def test_settings_find_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyError, match="unknown model 'nope'; configured models: diabetes-progression"):
        model_config("nope")
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    model_config.cache_clear()
    try:
        with pytest.raises(KeyError, match="configured models: none"):
            model_config("tumor-classifier")
    finally:
        model_config.cache_clear()
