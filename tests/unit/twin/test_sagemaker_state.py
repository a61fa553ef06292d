"""A twin restart keeps the SageMaker control plane: registry, models, endpoint configs, endpoints, jobs.

The twins here run the mini app in-process on one work dir, one after the other, as
``mlops local down`` / ``up`` do; endpoints serve again after the restart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends

from mlops.twin.runtime import Twin
from mlops.twin.sagemaker.jobs import JobFailed
from mlops.twin.sagemaker.state import FILE, JOB_INTERRUPTED, ControlPlaneState
from tests.unit.twin import FACTOR_INFERENCE, SKLEARN_IMAGE, tar_gz
from tests.unit.twin.mini_app import running, write_assembly

ACCOUNT, REGION = "123456789012", "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/model"
TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/ep/variant/AllTraffic",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


def _twin(root: Path) -> Twin:
    # IAM off: the models' role is not one of the mini app's (what IAM checks is tested elsewhere)
    return Twin(root / "cdk.out", root / "work", time_scale=0.01, iam=False)


def _deploy(twin: Twin, name: str, factor: int, package_arn: str) -> None:
    s3, sm = twin.client("s3"), twin.client("sagemaker")
    model = tar_gz({"model.json": json.dumps({"factor": factor})})
    s3.put_object(Bucket="models-bkt", Key=f"{name}.tar.gz", Body=model)
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": f"s3://models-bkt/{name}.tar.gz",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "s3://models-bkt/code.tar.gz",
                "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
            },
        },
        Tags=[{"Key": "mlops:model-package-arn", "Value": package_arn}],
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"cfg-{name}",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
        ],
    )


def _create_endpoint(twin: Twin, name: str, config: str) -> None:
    """CreateEndpoint, then until the endpoint is InService (it is Creating while its model loads)."""
    sm = twin.client("sagemaker")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=config)
    deadline = time.monotonic() + 60
    while (status := sm.describe_endpoint(EndpointName=name)["EndpointStatus"]) == "Creating":
        assert time.monotonic() < deadline, "the endpoint stayed Creating"
        time.sleep(0.05)
    assert status == "InService", sm.describe_endpoint(EndpointName=name).get("FailureReason")


def _predict(twin: Twin, endpoint: str, x: float) -> Any:
    answer = twin.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps(x), ContentType="application/json"
    )
    return json.loads(answer["Body"].read())


def _state_changes(root: Path) -> int:
    lines = (root / "work" / "events.jsonl").read_text().splitlines()
    return sum('"SageMaker Model Package State Change"' in line for line in lines)


def _shown(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def _packages(sm: Any) -> list[dict[str, Any]]:
    listed = sm.list_model_packages(ModelPackageGroupName="demo", SortBy="CreationTime", SortOrder="Ascending")
    return [
        _shown(sm.describe_model_package(ModelPackageName=p["ModelPackageArn"]))
        for p in listed["ModelPackageSummaryList"]
    ]


def _register(sm: Any, status: str, metadata: dict[str, str]) -> str:
    return sm.create_model_package(
        ModelPackageGroupName="demo",
        ModelApprovalStatus=status,
        **({"CustomerMetadataProperties": metadata} if metadata else {}),  # SageMaker refuses an empty map
        InferenceSpecification={
            "Containers": [{"Image": SKLEARN_IMAGE, "ModelDataUrl": "s3://models-bkt/v1.tar.gz"}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelMetrics={
            "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://models-bkt/eval.json"}}
        },
    )["ModelPackageArn"]


def test_a_restart_keeps_the_registry_models_endpoints_and_serving(tmp_path: Path) -> None:
    write_assembly(tmp_path)
    with running(_twin(tmp_path)) as twin:
        s3, sm = twin.client("s3"), twin.client("sagemaker")
        s3.create_bucket(Bucket="models-bkt")
        s3.put_object(Bucket="models-bkt", Key="code.tar.gz", Body=tar_gz({"inference.py": FACTOR_INFERENCE}))
        sm.create_model_package_group(ModelPackageGroupName="demo", ModelPackageGroupDescription="the demo model")
        v1 = _register(sm, "PendingManualApproval", {"accuracy": "0.91", "data_version": "abc"})
        _register(sm, "PendingManualApproval", {"accuracy": "0.85"})
        sm.update_model_package(ModelPackageArn=v1, ModelApprovalStatus="Approved", ApprovalDescription="gate passed")
        _deploy(twin, "v1", 2, v1)
        _create_endpoint(twin, "ep", "cfg-v1")
        assert _predict(twin, "ep", 1.5) == 3.0
        scaling = twin.client("application-autoscaling")
        scaling.register_scalable_target(**TARGET, MinCapacity=1, MaxCapacity=3)
        scaling.put_scaling_policy(
            **TARGET,
            PolicyName="ep-invocations",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 100.0,
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            },
        )
        with pytest.raises(JobFailed):  # a job the twin ran (it fails at once: an image SageMaker has not)
            twin.jobs.train(
                {
                    "TrainingJobName": "train-1",
                    "AlgorithmSpecification": {"TrainingImage": "nowhere/none:1", "TrainingInputMode": "File"},
                    "OutputDataConfig": {"S3OutputPath": "s3://models-bkt/out"},
                    "RoleArn": ROLE,
                }
            )
        before = {
            "packages": _packages(sm),
            "group": _shown(sm.describe_model_package_group(ModelPackageGroupName="demo")),
            "model": _shown(sm.describe_model(ModelName="v1")),
            "config": _shown(sm.describe_endpoint_config(EndpointConfigName="cfg-v1")),
            "endpoint": sm.describe_endpoint(EndpointName="ep"),
            "job": sm.describe_training_job(TrainingJobName="train-1"),
            "targets": scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"],
            "policies": scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"],
        }
    assert (tmp_path / "work" / "sagemaker" / FILE).is_file()
    changes = _state_changes(tmp_path)
    assert changes == 3  # two created, one approved

    with running(_twin(tmp_path)) as twin:
        sm = twin.client("sagemaker")
        after = _packages(sm)
        assert [p["ModelPackageArn"] for p in after] == [p["ModelPackageArn"] for p in before["packages"]]
        assert [p["ModelPackageVersion"] for p in after] == [1, 2]
        assert [p["ModelApprovalStatus"] for p in after] == ["Approved", "PendingManualApproval"]
        assert after[0]["CustomerMetadataProperties"] == {"accuracy": "0.91", "data_version": "abc"}
        assert after[0]["ApprovalDescription"] == "gate passed"
        assert after[0]["ModelMetrics"] == before["packages"][0]["ModelMetrics"]
        assert _shown(sm.describe_model_package_group(ModelPackageGroupName="demo")) == before["group"]
        assert _shown(sm.describe_model(ModelName="v1")) == before["model"]
        assert sm.list_tags(ResourceArn=before["model"]["ModelArn"])["Tags"][0]["Value"] == v1
        assert _shown(sm.describe_endpoint_config(EndpointConfigName="cfg-v1")) == before["config"]
        endpoint = sm.describe_endpoint(EndpointName="ep")
        assert endpoint["EndpointArn"] == before["endpoint"]["EndpointArn"]
        assert endpoint["EndpointStatus"] == "InService"
        assert _predict(twin, "ep", 1.5) == 3.0  # serving again, with no new deployment
        job = sm.describe_training_job(TrainingJobName="train-1")
        assert job["TrainingJobStatus"] == "Failed"
        assert job["FailureReason"] == before["job"]["FailureReason"]
        scaling = twin.client("application-autoscaling")
        assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == before["targets"]
        assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == before["policies"]
        assert len(before["targets"]) == len(before["policies"]) == 1
        assert _state_changes(tmp_path) == changes  # restoring is not registering: nothing is deployed again
        # and the restored registry goes on numbering where it was
        assert sm.describe_model_package(ModelPackageName=_register(sm, "Approved", {}))["ModelPackageVersion"] == 3


def test_endpoints_and_jobs_caught_mid_change_end_in_a_defined_state(tmp_path: Path) -> None:
    write_assembly(tmp_path)
    with running(_twin(tmp_path)) as twin:
        s3, sm = twin.client("s3"), twin.client("sagemaker")
        s3.create_bucket(Bucket="models-bkt")
        s3.put_object(Bucket="models-bkt", Key="code.tar.gz", Body=tar_gz({"inference.py": FACTOR_INFERENCE}))
        _deploy(twin, "v1", 2, "arn:p/1")
        _deploy(twin, "v2", 3, "arn:p/2")
        _create_endpoint(twin, "updating", "cfg-v1")
        _create_endpoint(twin, "creating", "cfg-v2")
        # the twin dies while one endpoint is being updated to v2 and another one is being created,
        # and while a job runs: the snapshot written last holds them so
        backend = sagemaker_backends[twin.assembly.account][twin.assembly.region]
        backend.endpoints["updating"].endpoint_status = "Updating"
        backend.endpoints["creating"].endpoint_status = "Creating"
        twin.sagemaker_state.record_job(
            {
                "ProcessingJobName": "eval-1",
                "ProcessingJobArn": f"arn:aws:sagemaker:{REGION}:{twin.assembly.account}:processing-job/eval-1",
                "ProcessingJobStatus": "InProgress",
                "CreationTime": "2026-01-01T00:00:00+00:00",
            }
        )

    with running(_twin(tmp_path)) as twin:
        sm = twin.client("sagemaker")
        updating = sm.describe_endpoint(EndpointName="updating")
        assert updating["EndpointStatus"] == "InService"
        assert updating["EndpointConfigName"] == "cfg-v1"
        assert updating["FailureReason"].startswith("rolled back: the twin stopped during the deployment")
        assert _predict(twin, "updating", 1) == 2  # the old fleet: the new config never took traffic
        creating = sm.describe_endpoint(EndpointName="creating")
        assert creating["EndpointStatus"] == "InService"
        assert _predict(twin, "creating", 1) == 3
        job = sm.describe_processing_job(ProcessingJobName="eval-1")
        assert (job["ProcessingJobStatus"], job["FailureReason"]) == ("Failed", JOB_INTERRUPTED)


def test_an_endpoint_whose_model_data_is_gone_is_failed_with_the_reason(tmp_path: Path) -> None:
    write_assembly(tmp_path)
    with running(_twin(tmp_path)) as twin:
        s3 = twin.client("s3")
        s3.create_bucket(Bucket="models-bkt")
        s3.put_object(Bucket="models-bkt", Key="code.tar.gz", Body=tar_gz({"inference.py": FACTOR_INFERENCE}))
        _deploy(twin, "v1", 2, "arn:p/1")
        _create_endpoint(twin, "ep", "cfg-v1")
        s3.delete_object(Bucket="models-bkt", Key="v1.tar.gz")
    for cached in (tmp_path / "work" / "endpoints").iterdir():  # the downloaded model is not kept either
        subprocess.run(["rm", "-rf", str(cached)], check=True)

    with running(_twin(tmp_path)) as twin:
        described = twin.client("sagemaker").describe_endpoint(EndpointName="ep")
        assert described["EndpointStatus"] == "Failed"
        assert "the twin restarted and the model failed to load" in described["FailureReason"]


# -- the snapshot file itself -------------------------------------------------------------------
@pytest.fixture
def state(tmp_path: Path) -> ControlPlaneState:
    sagemaker_backends[ACCOUNT][REGION].reset()
    return ControlPlaneState(tmp_path / "sagemaker", ACCOUNT, REGION)


def _groups() -> list[str]:
    return sorted(sagemaker_backends[ACCOUNT][REGION].model_package_groups)


def test_a_write_cut_short_leaves_the_previous_snapshot(state: ControlPlaneState) -> None:
    backend = state.backend
    backend.create_model_package_group("first", "", [])
    state.save()
    backend.create_model_package_group("second", "", [])
    state.save()
    whole = state.path.read_bytes()
    backend.create_model_package_group("third", "", [])
    # killed while writing the next one: its temporary file is torn and was never renamed
    state.path.with_name(FILE + ".tmp").write_bytes(whole[: len(whole) // 2])
    backend.reset()
    assert state.restore()
    assert _groups() == ["first", "second"]
    assert not state.path.with_name(FILE + ".tmp").exists()


def test_an_unreadable_snapshot_is_set_aside_not_half_applied(state: ControlPlaneState) -> None:
    state.root.mkdir(parents=True)
    state.path.write_bytes(b"\x80\x05garbage")
    assert not state.restore()
    assert _groups() == []
    assert state.path.with_name(FILE + ".unreadable").read_bytes() == b"\x80\x05garbage"


WRITER = """
import sys
from moto.sagemaker.models import sagemaker_backends
from mlops.twin.sagemaker.state import ControlPlaneState

state = ControlPlaneState(sys.argv[1], {account!r}, {region!r})
backend = state.backend
for i in range(100000):
    backend.create_model_package_group(f"g{{i:06d}}", "x" * 2000, [])
    state.save()
    if i == 20:
        print("writing", flush=True)
"""


def test_kill_9_while_writing_leaves_a_readable_snapshot(state: ControlPlaneState, tmp_path: Path) -> None:
    code = textwrap.dedent(WRITER.format(account=ACCOUNT, region=REGION))
    proc = subprocess.Popen([sys.executable, "-c", code, str(state.root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    time.sleep(0.5)  # many snapshots later, each larger than the last
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert state.restore()
    groups = _groups()
    assert len(groups) > 20
    assert groups == [f"g{i:06d}" for i in range(len(groups))]  # a whole snapshot: no group missing


def test_concurrent_saves_are_serialized_and_the_last_sees_every_record(state: ControlPlaneState) -> None:
    backend, errors = state.backend, []

    def add(prefix: str) -> None:
        try:
            for i in range(100):
                backend.create_model_package_group(f"{prefix}{i:04d}", "", [])
                state.save()
        except Exception as exc:  # any failure of a writer fails the test
            errors.append(exc)

    writers = [threading.Thread(target=add, args=(p,)) for p in "ab"]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert errors == []
    backend.reset()
    assert state.restore()
    assert len(_groups()) == 200  # the last save saw every record


def test_transform_jobs_run_through_the_api_and_one_cut_short_by_a_restart_ends_failed(tmp_path: Path) -> None:
    write_assembly(tmp_path)
    request = {
        "TransformJobName": "score-1",
        "ModelName": "v1",
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://models-bkt/in/"}},
            "ContentType": "application/json",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": "s3://models-bkt/out/", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    with running(_twin(tmp_path)) as twin:
        s3, sm = twin.client("s3"), twin.client("sagemaker")
        s3.create_bucket(Bucket="models-bkt")
        s3.put_object(Bucket="models-bkt", Key="code.tar.gz", Body=tar_gz({"inference.py": FACTOR_INFERENCE}))
        s3.put_object(Bucket="models-bkt", Key="in/x.jsonl", Body=b"1\n2\n3\n")
        _deploy(twin, "v1", 2, "arn:p/1")
        arn = sm.create_transform_job(**request)["TransformJobArn"]
        assert arn.endswith(":transform-job/score-1")
        deadline = time.monotonic() + 120
        while (job := sm.describe_transform_job(TransformJobName="score-1"))["TransformJobStatus"] == "InProgress":
            assert time.monotonic() < deadline, "the transform job stayed InProgress"
            time.sleep(0.1)
        assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
        assert s3.get_object(Bucket="models-bkt", Key="out/x.jsonl.out")["Body"].read() == b"2\n4\n6\n"
        with pytest.raises(ClientError, match="Transform job names must be unique"):
            sm.create_transform_job(**request)
        twin.sagemaker_state.record_job(
            {
                "TransformJobName": "score-2",
                "TransformJobArn": f"arn:aws:sagemaker:{REGION}:{twin.assembly.account}:transform-job/score-2",
                "TransformJobStatus": "InProgress",
                "CreationTime": "2026-01-01T00:00:00+00:00",
            }
        )
    with running(_twin(tmp_path)) as twin:
        sm = twin.client("sagemaker")
        assert sm.describe_transform_job(TransformJobName="score-1")["TransformJobStatus"] == "Completed"
        job = sm.describe_transform_job(TransformJobName="score-2")
        assert (job["TransformJobStatus"], job["FailureReason"]) == ("Failed", JOB_INTERRUPTED)
        listed = sm.list_transform_jobs()["TransformJobSummaries"]
        assert {j["TransformJobName"] for j in listed} == {"score-1", "score-2"}
