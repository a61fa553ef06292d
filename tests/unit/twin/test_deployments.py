"""Endpoint create/update on the twin through the real SageMaker API: canary, promotion, rollback."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.sagemaker.models import sagemaker_backends
from moto.server import ThreadedMotoServer

from mlops.twin.cloudwatch.alarms import Alarm, AlarmEvaluator, MetricStore
from mlops.twin.sagemaker.endpoints import EndpointManager
from mlops.twin.sagemaker.serving import CaptureWriter, EndpointRuntime, InvokeError
from tests.unit.twin import FACTOR_INFERENCE, SKLEARN_IMAGE, tar_gz


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sagemaker_backends["123456789012"]["us-east-1"].reset()  # no endpoint manager of an earlier test hooked in
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    kw = {
        "endpoint_url": f"http://{host}:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "a",
        "aws_secret_access_key": "b",
    }
    s3, sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
    s3.create_bucket(Bucket="models-bkt")
    s3.put_object(Bucket="models-bkt", Key="code.tar.gz", Body=tar_gz({"inference.py": FACTOR_INFERENCE}))
    for name, model in {"v1": {"factor": 2}, "v2": {"factor": 3}, "bad": {"factor": 1, "broken": True}}.items():
        s3.put_object(Bucket="models-bkt", Key=f"{name}.tar.gz", Body=tar_gz({"model.json": json.dumps(model)}))
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
            PrimaryContainer={
                "Image": SKLEARN_IMAGE,
                "ModelDataUrl": f"s3://models-bkt/{name}.tar.gz",
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "SAGEMAKER_SUBMIT_DIRECTORY": "s3://models-bkt/code.tar.gz",
                },
            },
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
    metrics = MetricStore()
    alarms = AlarmEvaluator(metrics, lambda e: None, "123456789012", "us-east-1")
    alarms.add(
        Alarm.from_properties(
            "errors",
            "arn:alarm:errors",
            {
                "Namespace": "AWS/SageMaker",
                "MetricName": "Invocation5XXErrors",
                "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}],
                "Statistic": "Sum",
                "Period": 1,
                "EvaluationPeriods": 1,
                "Threshold": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching",
            },
        )
    )
    runtime = EndpointRuntime(metrics, CaptureWriter(lambda b, k, body: None))
    manager = EndpointManager(
        account="123456789012", region="us-east-1", s3=s3, runtime=runtime, alarms=alarms, workdir=tmp_path
    )
    manager.install()
    yield {"sm": sm, "runtime": runtime, "manager": manager}
    server.stop()
    runtime.close()


def _predict(runtime: EndpointRuntime, x: float) -> float:
    out, _, _ = runtime.invoke("ep", json.dumps(x).encode(), "application/json", "application/json")
    return json.loads(out)


def _wait_for_canary(runtime: EndpointRuntime) -> None:
    """Until the new fleet (its model servers started) takes its share of traffic."""
    deadline = time.monotonic() + 120
    while len(runtime.endpoints["ep"].variants) < 2:
        assert time.monotonic() < deadline, "the canary never started"
        time.sleep(0.05)


def _wait_in_service(sm: Any, name: str = "ep") -> dict[str, Any]:
    """Until the endpoint settles (Creating, Updating and RollingBack are on the way)."""
    for _ in range(600):
        described = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating", "RollingBack"):
            return described
        time.sleep(0.1)
    raise AssertionError(f"endpoint stayed {described['EndpointStatus']}")


CANARY = {
    "BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            "WaitIntervalInSeconds": 2,
        },
        "TerminationWaitInSeconds": 0,
    },
    "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
}


def test_create_then_canary_update_promotes_the_new_model(setup: dict[str, Any]) -> None:
    sm, runtime = setup["sm"], setup["runtime"]
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="cfg-v1")
    assert _wait_in_service(sm)["EndpointStatus"] == "InService"
    assert _predict(runtime, 1) == 2
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="cfg-v2", DeploymentConfig=CANARY)
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Updating"
    _wait_for_canary(runtime)
    seen = {_predict(runtime, 1) for _ in range(60)}
    assert seen == {2, 3}  # both fleets take traffic during the canary
    described = _wait_in_service(sm)
    assert described["EndpointConfigName"] == "cfg-v2"
    assert {_predict(runtime, 1) for _ in range(10)} == {3}
    assert setup["manager"].deployments[-1]["status"] == "Succeeded"


def test_failing_canary_rolls_back_and_the_old_model_keeps_serving(setup: dict[str, Any]) -> None:
    sm, runtime = setup["sm"], setup["runtime"]
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="cfg-v1")
    assert _wait_in_service(sm)["EndpointStatus"] == "InService"
    sm.update_endpoint(EndpointName="ep", EndpointConfigName="cfg-bad", DeploymentConfig=CANARY)
    _wait_for_canary(runtime)
    for _ in range(20):  # traffic during the canary: the new fleet answers with errors
        with contextlib.suppress(InvokeError):
            _predict(runtime, 1)
    described = _wait_in_service(sm)
    assert described["EndpointConfigName"] == "cfg-v1"
    assert "rolled back" in described.get("FailureReason", "")
    assert {_predict(runtime, 1) for _ in range(10)} == {2}
    assert setup["manager"].deployments[-1]["status"] == "RolledBack"


def test_an_endpoint_is_creating_until_it_serves_or_fails_and_deleting_until_gone(setup: dict[str, Any]) -> None:
    sm, runtime = setup["sm"], setup["runtime"]
    setup["manager"].delete_seconds = 0.5
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="cfg-v1")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Creating"  # its model server starting
    assert _wait_in_service(sm)["EndpointStatus"] == "InService"
    assert _predict(runtime, 1) == 2
    sm.delete_endpoint(EndpointName="ep")
    assert sm.describe_endpoint(EndpointName="ep")["EndpointStatus"] == "Deleting"
    with pytest.raises(InvokeError):
        _predict(runtime, 1)  # no longer served
    deadline = time.monotonic() + 30
    while True:
        try:
            sm.describe_endpoint(EndpointName="ep")
        except sm.exceptions.ClientError as exc:
            assert "Could not find endpoint" in str(exc)
            break
        assert time.monotonic() < deadline, "the endpoint stayed Deleting"
        time.sleep(0.1)
    # a model whose artifact is missing: the endpoint fails to create, with the reason
    sm.create_model(
        ModelName="missing",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": "s3://models-bkt/missing.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="cfg-missing",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "missing",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="cfg-missing")
    described = _wait_in_service(sm)
    assert described["EndpointStatus"] == "Failed"
    assert "failed to load the model" in described["FailureReason"]
