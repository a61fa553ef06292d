"""Batch transform jobs on the twin: the model's own handlers, mini-batches by line, output in input order."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mlops.twin import moto_ext
from mlops.twin.sagemaker.jobs import JobFailed, JobRunner
from mlops.twin.sagemaker.rules import Invalid, SageMakerRules
from tests.unit.twin import SKLEARN_IMAGE, tar_gz
from tests.unit.twin.test_sagemaker_rules import ACCOUNT, REGION, _backend

# CSV in, one output line per input line: the row's first value times the model's factor
INFERENCE = """
import json, os, time
def model_fn(d):
    return json.load(open(os.path.join(d, "model.json")))
def input_fn(body, content_type):
    assert content_type == "text/csv", content_type
    return [line.split(",") for line in body.splitlines() if line]
def predict_fn(rows, model):
    if model.get("sleep"):
        time.sleep(model["sleep"])
    if any(r[0] == "boom" for r in rows):
        raise ValueError("cannot score boom")
    return [float(r[0]) * model["factor"] for r in rows]
def output_fn(values, accept):
    return "".join(f"{v}\\n" for v in values), accept
"""


def _model(s3: Any, **model: Any) -> dict[str, Any]:
    s3.put_object(Bucket="models", Key="m/model.tar.gz", Body=tar_gz({"model.json": __import__("json").dumps(model)}))
    s3.put_object(Bucket="models", Key="m/code.tar.gz", Body=tar_gz({"inference.py": INFERENCE}))
    return {
        "ModelName": "m",
        "ExecutionRoleArn": "arn:aws:iam::000000000000:role/sm",
        "PrimaryContainer": {
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": "s3://models/m/model.tar.gz",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "s3://models/m/code.tar.gz",
            },
        },
    }


def _request(name: str = "t-1", **extra: Any) -> dict[str, Any]:
    return {
        "TransformJobName": name,
        "ModelName": "m",
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 1,
        "MaxConcurrentTransforms": 2,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://data/out/", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **extra,
    }


@pytest.fixture
def runner(s3: Any, tmp_path: Path) -> JobRunner:
    for bucket in ("models", "data"):
        s3.create_bucket(Bucket=bucket)
    recorded: list[dict[str, Any]] = []
    runner = JobRunner(s3, tmp_path / "sagemaker", "000000000000", "us-east-1", record=recorded.append)
    runner.recorded = recorded  # type: ignore[attr-defined]
    return runner


def test_every_line_gets_one_output_line_in_input_order(runner: JobRunner, s3: Any) -> None:
    rows = 150_000  # about 1.3 MB: two mini-batches of at most 1 MB, scored side by side
    s3.put_object(Bucket="data", Key="in/a.csv", Body="".join(f"{i},x\n" for i in range(rows)).encode())
    s3.put_object(Bucket="data", Key="in/sub/b.csv", Body=b"1,y\n2,y\n")
    describe = runner.transform(_request(), _model(s3, factor=2))
    assert describe["TransformJobStatus"] == "Completed"
    out = s3.get_object(Bucket="data", Key="out/a.csv.out")["Body"].read().decode().splitlines()
    assert out == [f"{2.0 * i}" for i in range(rows)]
    assert s3.get_object(Bucket="data", Key="out/sub/b.csv.out")["Body"].read() == b"2.0\n4.0\n"
    statuses = [r["TransformJobStatus"] for r in runner.recorded]  # type: ignore[attr-defined]
    assert statuses == ["InProgress", "Completed"]
    assert "3 mini-batch(es)" in (runner.root / "transform" / "t-1" / "job.log").read_text()  # 2 + 1


def test_a_handler_error_fails_the_job_with_the_models_message(runner: JobRunner, s3: Any) -> None:
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1,x\nboom,x\n")
    with pytest.raises(JobFailed) as info:
        runner.transform(_request(), _model(s3, factor=2))
    assert info.value.describe["TransformJobStatus"] == "Failed"
    assert info.value.describe["FailureReason"].startswith("AlgorithmError: ValueError: cannot score boom")


def test_a_record_over_the_payload_limit_and_missing_input_fail_the_job(runner: JobRunner, s3: Any) -> None:
    with pytest.raises(JobFailed, match="No S3 objects found under S3 URL"):
        runner.transform(_request("t-2"), _model(s3, factor=2))
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1," + b"x" * (1024 * 1024 + 10) + b"\n")
    with pytest.raises(JobFailed, match="exceeds MaxPayloadInMB"):
        runner.transform(_request("t-3"), _model(s3, factor=2))


def test_stop_transform_job_ends_it_stopped(runner: JobRunner, s3: Any) -> None:
    s3.put_object(Bucket="data", Key="in/a.csv", Body="".join(f"{i}\n" for i in range(20)).encode())
    outcome: list[Any] = []
    params = _request(BatchStrategy="SingleRecord", MaxConcurrentTransforms=1)

    def run() -> None:
        try:
            outcome.append(runner.transform(params, _model(s3, factor=1, sleep=0.3)))
        except JobFailed as exc:
            outcome.append(exc.describe)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not runner._models and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop_transform("t-1")
    thread.join(timeout=60)
    assert outcome[0]["TransformJobStatus"] == "Stopped"
    assert not runner._models  # its model server is closed


def test_transform_rules_unique_names_and_an_existing_model(s3: Any) -> None:
    rules = SageMakerRules(_backend, ACCOUNT, REGION)
    _backend().reset()
    with pytest.raises(Invalid, match=r'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/m"'):
        rules("CreateTransformJob", _request())
    _backend()._models["m"] = object()
    rules("CreateTransformJob", _request())
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:transform-job/t-1"
    moto_ext.record_job(_backend(), {**_request(), "TransformJobArn": arn, "TransformJobStatus": "Completed"})
    with pytest.raises(Invalid, match=r"Transform job names must be unique .* already exists"):
        rules("CreateTransformJob", _request())
    with pytest.raises(Invalid, match="Could not find transform job 'arn:aws:sagemaker:us-east-1:123456789012:"):
        rules("StopTransformJob", {"TransformJobName": "nope"})
    bad = _request("t-9")
    bad["TransformInput"]["SplitType"] = "Word"
    with pytest.raises(
        Invalid, match=r"at 'transformInput\.splitType' failed to satisfy constraint: Member must satisfy enum"
    ):
        rules("CreateTransformJob", bad)
    _backend().reset()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"DataProcessing": {"JoinSource": "Input"}}, "DataProcessing"),
        ({"TransformInput": {**_request()["TransformInput"], "CompressionType": "Gzip"}}, "CompressionType Gzip"),
        ({"TransformInput": {**_request()["TransformInput"], "SplitType": "RecordIO"}}, "SplitType RecordIO"),
    ],
)
def test_what_the_twin_does_not_run_fails_the_job_by_name(
    runner: JobRunner, s3: Any, change: dict[str, Any], named: str
) -> None:
    s3.put_object(Bucket="data", Key="in/a.csv", Body=b"1,x\n")
    with pytest.raises(JobFailed, match=f"ClientError: {named}.* is not supported by the local twin"):
        runner.transform({**_request(), **change}, _model(s3, factor=2))


def test_a_transform_cut_short_by_the_twin_stopping_says_so(runner: JobRunner, s3: Any) -> None:
    from mlops.twin.sagemaker.state import JOB_INTERRUPTED

    s3.put_object(Bucket="data", Key="in/a.csv", Body="".join(f"{i}\n" for i in range(20)).encode())
    outcome: list[Any] = []
    params = _request(BatchStrategy="SingleRecord", MaxConcurrentTransforms=1)

    def run() -> None:
        try:
            outcome.append(runner.transform(params, _model(s3, factor=1, sleep=0.3)))
        except JobFailed as exc:
            outcome.append(exc.describe)
        except Exception as exc:  # anything else is the test's failure, said as such below
            outcome.append({"unexpected": repr(exc)})

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 120
    # stop once the model server answers requests (the transform is under way), not while it loads
    while not any(m._all for m in list(runner._models)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    runner.stop_all()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the transform went on after the twin stopped"
    [described] = outcome
    assert (described.get("TransformJobStatus"), described.get("FailureReason")) == ("Failed", JOB_INTERRUPTED), (
        described
    )
