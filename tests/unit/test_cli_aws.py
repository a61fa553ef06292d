"""The operator's commands with ``--aws``: the same code path as on the twin, here against moto in-process.

The app's stacks are stood in for by CloudFormation stacks with the outputs the real stacks
declare (the commands find every resource through ``DescribeStacks``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from mlops.cli import app
from mlops.naming import STACKS, alarm_name
from mlops.services.fates import Fate, FateStore

REGION = "us-east-1"
MODEL = "tumor-classifier"
BUCKETS = {"Incoming": "incoming-b", "Validated": "validated-b", "Artifacts": "artifacts-b", "Quarantine": "q-b"}


def _stack(cfn: Any, name: str, resources: dict[str, Any], outputs: dict[str, Any]) -> None:
    template = {"Resources": resources, "Outputs": {k: {"Value": v} for k, v in outputs.items()}}
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        sfn = boto3.client("stepfunctions", region_name=REGION)
        role = "arn:aws:iam::123456789012:role/sfn"
        definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
        machines = {
            kind: sfn.create_state_machine(name=f"Mlops{kind.capitalize()}", definition=definition, roleArn=role)[
                "stateMachineArn"
            ]
            for kind in ("validation", "training", "deploy", "batch")
        }
        buckets = {
            f"{role_}Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": name}}
            for role_, name in BUCKETS.items()
        }
        _stack(cfn, STACKS["data"], buckets, {f"{r}BucketName": n for r, n in BUCKETS.items()})
        topic = {"Topic": {"Type": "AWS::SNS::Topic"}}
        _stack(cfn, STACKS["validation"], topic, {"ValidationStateMachineArn": machines["validation"]})
        _stack(cfn, STACKS["training"], topic, {"TrainingStateMachineArn": machines["training"]})
        _stack(cfn, STACKS["serving"], topic, {"DeployStateMachineArn": machines["deploy"]})
        _stack(cfn, STACKS["batch"], topic, {"BatchStateMachineArn": machines["batch"]})
        yield {"machines": machines, "sfn": sfn}


def _mlops(*args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--aws"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def test_executions_on_aws(account: dict[str, Any]) -> None:
    sfn = account["sfn"]
    sfn.start_execution(
        stateMachineArn=account["machines"]["training"], name="run-1", input=json.dumps({"model": MODEL})
    )
    listed = _mlops("executions")
    assert "run-1" in listed and "training" in listed
    assert "run-1" in _mlops("executions", "run-1")


def test_datasets_on_aws(account: dict[str, Any]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    store = FateStore(s3, BUCKETS["Artifacts"])
    store.change(MODEL, "20261207T100000Z-a", Fate.VALIDATED, "validated: 1,500 rows")
    store.change(MODEL, "20261207T110000Z-b", Fate.QUARANTINED, "2 violations")
    listed = _mlops("datasets")
    assert "20261207T100000Z-a" in listed and "validated" in listed
    assert "20261207T110000Z-b" in listed and "quarantined" in listed
    assert "20261207T110000Z-b" in _mlops("datasets", MODEL)


def test_status_and_models_on_aws(account: dict[str, Any]) -> None:
    boto3.client("cloudwatch", region_name=REGION).put_metric_alarm(
        AlarmName=alarm_name(MODEL, "drift"), MetricName="DriftScore", Namespace="Mlops", Statistic="Maximum",
        Period=300, EvaluationPeriods=1, Threshold=0.2, ComparisonOperator="GreaterThanThreshold",
    )  # fmt: skip
    status = _mlops("status")
    assert alarm_name(MODEL, "drift") in status and "no endpoints on AWS" in status
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model_package_group(ModelPackageGroupName=MODEL)
    sm.create_model_package(
        ModelPackageGroupName=MODEL, ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"dataset_version": "20261207T100000Z-a", "metric_accuracy": "0.93"},
        InferenceSpecification={
            "Containers": [{"Image": "sklearn:1.9-0", "ModelDataUrl": "s3://artifacts-b/m/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["application/json"],
        },
    )  # fmt: skip
    models = _mlops("models", MODEL)
    assert "PendingManualApproval" in models and "accuracy=0.93" in models


def test_batch_on_aws_uploads_under_batch_and_says_where_the_report_goes(
    account: dict[str, Any], tmp_path: Any
) -> None:
    from mlops.services.batch import report_location, run_name

    s3 = boto3.client("s3", region_name=REGION)
    rows = tmp_path / "rows.csv"
    rows.write_text("record_id,clinic\n1,north\n")
    out = _mlops("batch", MODEL, str(rows), "--no-wait")
    assert f"s3://incoming-b/batch/{MODEL}/rows.csv" in out
    assert s3.get_object(Bucket="incoming-b", Key=f"batch/{MODEL}/rows.csv")["Body"].read() == rows.read_bytes()
    report = report_location("artifacts-b", MODEL, run_name(f"batch/{MODEL}/rows.csv", None))
    assert report.uri in out
    # waiting: the report the run writes is read back and its outcome printed
    s3.put_object(
        Bucket=report.bucket,
        Key=report.key,
        Body=json.dumps({"status": "scored", "summary": "1 rows scored", "predictions_uri": "s3://artifacts-b/p.csv"}),
    )
    out = _mlops("batch", MODEL, str(rows))
    assert "scored" in out and "predictions: s3://artifacts-b/p.csv" in out
