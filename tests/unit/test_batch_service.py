"""The batch steps around the transform, against moto: refusals with reports, the request, the join."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import polars as pl
import pytest
from moto import mock_aws

from mlops.config import load_config
from mlops.core.batch import CountMismatch
from mlops.services.batch import OUTPUT_FILE, PASSTHROUGH_FILE, BatchScorer, BatchSettings, run_name

from ..conftest import ROOT

CONFIG = load_config(ROOT / "configs" / "tumor-classifier.yaml")
FEATURES = [c.name for c in CONFIG.dataset.features]
SETTINGS = BatchSettings(
    "incoming", "artifacts", "capture", "arn:aws:kms:us-east-1:123456789012:key/k", "arn:aws:iam::123456789012:role/sm"
)


@pytest.fixture
def scorer(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[BatchScorer, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("incoming", "artifacts", "capture"):
            s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket="incoming", VersioningConfiguration={"Status": "Enabled"})
        yield BatchScorer(s3, boto3.client("sagemaker"), SETTINGS), s3


def _upload(s3: Any, frame: pl.DataFrame, name: str) -> tuple[str, str]:
    key = f"batch/tumor-classifier/{name}"
    put = s3.put_object(Bucket="incoming", Key=key, Body=frame.write_csv().encode())
    return key, put["VersionId"]


def _frame(n: int) -> pl.DataFrame:
    data: dict[str, list[Any]] = {"record_id": list(range(n)), "clinic": ["north"] * n}
    data |= {name: [0.5] * n for name in FEATURES[1:]}
    return pl.DataFrame(data)


def test_a_missing_column_is_refused_with_a_report_and_delivered_twice_once(scorer: tuple[BatchScorer, Any]) -> None:
    batch, s3 = scorer
    key, version = _upload(s3, _frame(5).drop("mean_area"), "f.csv")
    plan = batch.prepare(key, version, CONFIG)
    assert plan["action"] == "refuse" and "feature column 'mean_area' is missing" in plan["summary"]
    report = json.loads(
        s3.get_object(Bucket="artifacts", Key=plan["report_uri"][len("s3://artifacts/") :])["Body"].read()
    )
    assert report["status"] == "refused" and report["problems"][0]["column"] == "mean_area"
    assert report["source"]["version_id"] == version and len(report["source"]["sha256"]) == 64
    again = batch.prepare(key, version, CONFIG)  # the same S3 event delivered twice
    assert again["action"] == "skip" and again["run"] == plan["run"] == run_name(key, version)


def test_a_model_without_an_approved_version_is_refused(scorer: tuple[BatchScorer, Any]) -> None:
    batch, s3 = scorer
    key, version = _upload(s3, _frame(5), "f.csv")
    plan = batch.prepare(key, version, CONFIG)
    assert plan["action"] == "refuse" and "has no Approved version" in plan["summary"]


def test_the_transform_request_for_the_served_champion(
    scorer: tuple[BatchScorer, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch, s3 = scorer
    monkeypatch.setattr(batch, "champion", lambda config: ("tumor-classifier-v3-x", "arn:pkg/3"))
    key, version = _upload(s3, _frame(7), "f.csv")
    plan = batch.prepare(key, version, CONFIG)
    assert plan["action"] == "score" and plan["rows"] == 7 and plan["passthrough"] == ["record_id"]
    request = plan["transform_request"]
    assert request["ModelName"] == "tumor-classifier-v3-x" and request["TransformJobName"].startswith(
        "tumor-classifier-f-"
    )
    assert request["TransformInput"]["SplitType"] == "Line" and request["TransformOutput"]["AssembleWith"] == "Line"
    assert (
        request["TransformOutput"]["KmsKeyId"]
        == request["TransformResources"]["VolumeKmsKeyId"]
        == SETTINGS.kms_key_arn
    )
    prefix = f"batch/tumor-classifier/{plan['run']}/"
    body = s3.get_object(Bucket="artifacts", Key=prefix + "input/features.csv")["Body"].read().decode()
    assert body.splitlines()[0].split(",")[0] == "north" and len(body.splitlines()) == 7

    # after the transform: predictions beside the ids, capture and report
    s3.put_object(Bucket="artifacts", Key=prefix + OUTPUT_FILE, Body=b"1,0.2,0.8\n" * 7)
    result = batch.finish(plan, CONFIG)
    assert result["status"] == "scored"
    lines = s3.get_object(Bucket="artifacts", Key=prefix + "predictions.csv")["Body"].read().decode().splitlines()
    assert lines[0] == "record_id,prediction,probability_0,probability_1" and lines[1:] == [
        f"{i},1,0.2,0.8" for i in range(7)
    ]
    captured = s3.list_objects_v2(Bucket="capture", Prefix="datacapture/tumor-classifier/batch/")["Contents"]
    assert len(captured) == 1

    # a transform that returned fewer lines than rows fails the step, never writes short predictions
    s3.put_object(Bucket="artifacts", Key=prefix + OUTPUT_FILE, Body=b"1,0.2,0.8\n" * 6)
    with pytest.raises(CountMismatch):
        batch.finish(plan, CONFIG)
    assert s3.get_object(Bucket="artifacts", Key=prefix + PASSTHROUGH_FILE)


def test_a_failed_transform_gets_a_report_with_its_failure_reason(scorer: tuple[BatchScorer, Any]) -> None:
    batch, _ = scorer
    plan = {"model": "tumor-classifier", "run": "r", "source": {"key": "batch/tumor-classifier/f.csv"}}
    cause = json.dumps({"TransformJobStatus": "Failed", "FailureReason": "AlgorithmError: ValueError: bad"})
    result = batch.finish(plan, CONFIG, {"Error": "States.TaskFailed", "Cause": cause})
    assert result["status"] == "failed" and result["summary"].endswith("failed: AlgorithmError: ValueError: bad")


def test_without_an_endpoint_the_latest_approved_version_gets_a_model_once(scorer: tuple[BatchScorer, Any]) -> None:
    batch, _ = scorer
    sm = batch.sm
    sm.create_model_package_group(ModelPackageGroupName="tumor-classifier")
    spec = {"Containers": [{"Image": "img", "ModelDataUrl": "s3://artifacts/training/m.tar.gz"}]}
    for status in ("Approved", "Approved", "Rejected"):
        sm.create_model_package(
            ModelPackageGroupName="tumor-classifier", InferenceSpecification=spec, ModelApprovalStatus=status
        )
    name, package = batch.champion(CONFIG)
    assert name == "tumor-classifier-batch-v2" and package and package.endswith("/2")
    model = sm.describe_model(ModelName=name)
    assert model["ExecutionRoleArn"] == SETTINGS.execution_role_arn
    assert model["PrimaryContainer"]["ModelDataUrl"] == "s3://artifacts/training/m.tar.gz"
    assert batch.champion(CONFIG) == (name, package)  # the model is created once, then reused
