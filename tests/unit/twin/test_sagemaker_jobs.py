"""Training and processing jobs on the twin, with small scripts standing in for the real ones."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from mlops.twin.sagemaker.jobs import JobFailed, JobRunner
from tests.unit.twin import SKLEARN_IMAGE

TRAIN = """
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
rows = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "data.csv")).read().splitlines()
if args.get("--sleep"):
    import time
    time.sleep(float(args["--sleep"]))
if args.get("--fail") == "yes":
    open(os.environ["SM_OUTPUT_FAILURE"], "w").write("bad hyperparameter: fail=yes")
    sys.exit(3)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
    json.dump({"rows": len(rows) - 1, "args": args, "hps": json.loads(os.environ["SM_HPS"]), "cwd": os.getcwd()}, f)
import helper  # from the source dir, on PYTHONPATH
print("validation:accuracy=0.875")
print("rows=%d" % (len(rows) - 1))
"""

EVALUATE = """
import json, os, sys
model_dir, out_dir = sys.argv[1], sys.argv[2]
names = sorted(os.listdir(model_dir))
os.makedirs(out_dir, exist_ok=True)
json.dump({"inputs": names, "env": os.environ.get("MODE")}, open(os.path.join(out_dir, "evaluation.json"), "w"))
"""


def _code_archive(s3: Any) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in {"train.py": TRAIN, "evaluate.py": EVALUATE, "helper.py": "X = 1\n"}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket="assets-bkt", Key="code.tar.gz", Body=buf.getvalue())
    return "s3://assets-bkt/code.tar.gz"


@pytest.fixture
def runner(s3: Any, tmp_path: Path) -> JobRunner:
    for bucket in ("assets-bkt", "data-bkt"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="data-bkt", Key="run/train/data.csv", Body=b"a,b\n1,2\n3,4\n")
    s3.put_object(Bucket="data-bkt", Key="run/model/model.tar.gz", Body=b"fake")
    return JobRunner(s3, tmp_path / "sagemaker", "000000000000", "us-east-1")


def _training_params(code: str, **hps: str) -> dict[str, Any]:
    return {
        "TrainingJobName": "job-1",
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::000000000000:role/r",
        "HyperParameters": {"sagemaker_program": "train.py", "sagemaker_submit_directory": code, "depth": "3", **hps},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://data-bkt/run/train/"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://data-bkt/run/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def test_training_job_runs_the_script_under_the_sagemaker_contract(runner: JobRunner, s3: Any) -> None:
    out = runner.train(_training_params(_code_archive(s3)))
    assert out["TrainingJobStatus"] == "Completed"
    uri = out["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == "s3://data-bkt/run/output/job-1/output/model.tar.gz"
    body = s3.get_object(Bucket="data-bkt", Key="run/output/job-1/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        model = json.load(tar.extractfile("model.json"))
    assert model["rows"] == 2
    assert model["args"] == {"--depth": "3"}  # user hyperparameters as arguments, sagemaker_* kept out
    assert model["hps"] == {"depth": "3"}
    assert {m["MetricName"]: m["Value"] for m in out["FinalMetricDataList"]} == {
        "validation:accuracy": 0.875,
        "rows": 2,
    }


def test_a_relative_work_dir_works(runner: JobRunner, s3: Any, tmp_path: Path, monkeypatch: Any) -> None:
    # `mlops local up` defaults to the relative ".mlops"; the script runs in its code directory
    monkeypatch.chdir(tmp_path)
    relative = JobRunner(s3, Path("relative-sagemaker"), "000000000000", "us-east-1")
    out = relative.train(_training_params(_code_archive(s3)))
    assert out["TrainingJobStatus"] == "Completed", out.get("FailureReason")


def test_stopping_the_twin_stops_running_jobs(runner: JobRunner, s3: Any) -> None:
    import threading
    import time

    outcome: list[BaseException | dict[str, Any]] = []
    params = _training_params(_code_archive(s3), sleep="60")
    thread = threading.Thread(target=lambda: outcome.append(_catch(lambda: runner.train(params))))
    thread.start()
    deadline = time.monotonic() + 10
    while not runner._running and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop_all()
    thread.join(timeout=10)
    assert not thread.is_alive() and not runner._running
    assert isinstance(outcome[0], JobFailed)


def _catch(call: Any) -> Any:
    try:
        return call()
    except JobFailed as exc:
        return exc


def test_failing_script_is_a_failed_job_with_its_failure_message(runner: JobRunner, s3: Any) -> None:
    with pytest.raises(JobFailed) as info:
        runner.train(_training_params(_code_archive(s3), fail="yes"))
    describe = info.value.describe
    assert describe["TrainingJobStatus"] == "Failed"
    assert "ExitCode 3" in describe["FailureReason"]
    assert "bad hyperparameter: fail=yes" in describe["FailureReason"]


def test_missing_channel_data_fails_like_sagemaker(runner: JobRunner, s3: Any) -> None:
    params = _training_params(_code_archive(s3))
    params["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://data-bkt/nothing-here/"
    with pytest.raises(JobFailed, match="No S3 objects found under S3 URL"):
        runner.train(params)


def test_processing_job_remaps_opt_ml_and_uploads_outputs(runner: JobRunner, s3: Any) -> None:
    code = _code_archive(s3)
    params = {
        "ProcessingJobName": "eval-1",
        "AppSpecification": {
            "ImageUri": SKLEARN_IMAGE,
            "ContainerEntrypoint": [
                "/bin/sh",
                "-c",
                "mkdir -p /opt/ml/processing/src && tar -xzf /opt/ml/processing/input/code/code.tar.gz "
                '-C /opt/ml/processing/src && python3 /opt/ml/processing/src/evaluate.py "$@"',
                "sh",
            ],
            "ContainerArguments": ["/opt/ml/processing/model", "/opt/ml/processing/evaluation"],
        },
        "ProcessingInputs": [
            {"InputName": "code", "S3Input": {"S3Uri": code, "LocalPath": "/opt/ml/processing/input/code"}},
            {
                "InputName": "model",
                "S3Input": {"S3Uri": "s3://data-bkt/run/model/", "LocalPath": "/opt/ml/processing/model"},
            },
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "evaluation",
                    "S3Output": {"S3Uri": "s3://data-bkt/run/evaluation", "LocalPath": "/opt/ml/processing/evaluation"},
                }
            ]
        },
        "Environment": {"MODE": "check"},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    out = runner.process(params)
    assert out["ProcessingJobStatus"] == "Completed"
    result = json.loads(s3.get_object(Bucket="data-bkt", Key="run/evaluation/evaluation.json")["Body"].read())
    assert result == {"inputs": ["model.tar.gz"], "env": "check"}
