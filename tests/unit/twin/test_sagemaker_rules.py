"""SageMaker's rules on the twin: requests through the gateway are refused as SageMaker refuses them.

The gateway serves moto's SageMaker app with :class:`SageMakerRules` as its check, as the
twin mounts it; boto3 (its own parameter validation off, so the twin is the one judging)
calls it. Endpoint states the app meets (Failed, Updating) are set on moto's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.backends import get_backend
from moto.server import create_backend_app

from mlops.twin import moto_ext
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals
from mlops.twin.sagemaker.rules import Invalid, SageMakerRules
from tests.unit.twin import SKLEARN_IMAGE

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/sm"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 50,
    "DestinationS3Uri": "s3://capture/datacapture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
}
SERVERLESS = {
    "VariantName": "AllTraffic",
    "ModelName": "m",
    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
}


def _instances(count: int) -> dict[str, Any]:
    return {
        "VariantName": "AllTraffic",
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": count,
        "InitialVariantWeight": 1.0,
    }


def _canary(kind: str, value: int) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": kind, "Value": value},
                "WaitIntervalInSeconds": 60,
            }
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }


def _backend() -> Any:
    return get_backend("sagemaker")[ACCOUNT][REGION]


@pytest.fixture
def rules() -> SageMakerRules:
    return SageMakerRules(_backend, ACCOUNT, REGION)


@pytest.fixture
def sm(rules: SageMakerRules) -> Iterator[Any]:
    _backend().reset()
    gateway = Gateway(Principals(ACCOUNT))
    gateway.mount_wsgi("sagemaker", create_backend_app("sagemaker"), check=rules)
    url = gateway.start()
    client = boto3.client(
        "sagemaker",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="operator",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, parameter_validation=False),
    )
    client.create_model(
        ModelName="m",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": "s3://models/m.tar.gz"},
    )
    yield client
    gateway.stop()
    _backend().reset()


def _refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(info.value.response["Error"]["Message"])


def _endpoint(sm: Any, status: str, variant: dict[str, Any] | None = None) -> None:
    sm.create_endpoint_config(EndpointConfigName="old", ProductionVariants=[variant or _instances(2)])
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="old")
    _backend().endpoints["ep"].endpoint_status = status


# -- botocore's model ------------------------------------------------------------------------------
def test_the_service_model_is_enforced_in_sagemakers_words(sm: Any) -> None:
    message = _refused(sm.create_endpoint, EndpointName="bad_name", EndpointConfigName="c")
    assert message.startswith("1 validation error detected: Value 'bad_name' at 'endpointName' failed to satisfy")
    assert "regular expression pattern" in message
    assert "Member must not be null" in _refused(sm.create_endpoint, EndpointName="ep")
    message = _refused(
        sm.create_endpoint_config,
        EndpointConfigName="c",
        ProductionVariants=[{**_instances(1), "InitialInstanceCount": 0, "InstanceType": "ml.nope"}],
    )
    assert message.startswith("2 validation errors detected")
    assert "'productionVariants.1.member.initialInstanceCount'" in message
    assert "Member must have value greater than or equal to 1" in message
    assert "Member must satisfy enum value set" in message
    message = _refused(
        sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[{**_instances(1), "VariantName": 7}]
    )
    assert "Invalid type for parameter ProductionVariants[0].VariantName" in message


# -- serverless ------------------------------------------------------------------------------------
def test_a_serverless_variant_takes_no_data_capture_and_no_volume_key(sm: Any) -> None:
    message = _refused(
        sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[SERVERLESS], DataCaptureConfig=CAPTURE
    )
    assert "DataCaptureConfig is not supported for serverless endpoints" in message
    message = _refused(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[SERVERLESS], KmsKeyId=KEY)
    assert "KmsKeyId is not supported for serverless endpoints" in message
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[SERVERLESS])  # without both: accepted
    sm.create_endpoint_config(
        EndpointConfigName="i", ProductionVariants=[_instances(1)], DataCaptureConfig=CAPTURE, KmsKeyId=KEY
    )


def test_a_serverless_endpoint_takes_no_deployment_guardrails(sm: Any) -> None:
    _endpoint(sm, "InService", SERVERLESS)
    sm.create_endpoint_config(EndpointConfigName="new", ProductionVariants=[SERVERLESS])
    message = _refused(
        sm.update_endpoint,
        EndpointName="ep",
        EndpointConfigName="new",
        DeploymentConfig=_canary("CAPACITY_PERCENT", 10),
    )
    assert "DeploymentConfig is not supported for serverless endpoints" in message


# -- endpoint states -------------------------------------------------------------------------------
def test_a_failed_endpoint_accepts_only_delete(sm: Any) -> None:
    _endpoint(sm, "Failed")
    sm.create_endpoint_config(EndpointConfigName="new", ProductionVariants=[_instances(2)])
    message = _refused(sm.update_endpoint, EndpointName="ep", EndpointConfigName="new")
    assert "in status Failed" in message and "DeleteEndpoint" in message
    assert "Cannot create already existing endpoint" in _refused(
        sm.create_endpoint, EndpointName="ep", EndpointConfigName="new"
    )
    sm.delete_endpoint(EndpointName="ep")
    sm.create_endpoint(EndpointName="ep", EndpointConfigName="new")


@pytest.mark.parametrize("status", ["Creating", "Updating", "RollingBack", "Deleting"])
def test_no_update_while_the_endpoint_changes(sm: Any, status: str) -> None:
    _endpoint(sm, status)
    sm.create_endpoint_config(EndpointConfigName="new", ProductionVariants=[_instances(2)])
    message = _refused(sm.update_endpoint, EndpointName="ep", EndpointConfigName="new")
    assert message == f'Cannot update in-progress endpoint "arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/ep".'


def test_what_a_request_names_must_exist_and_names_are_unique(sm: Any) -> None:
    assert "Could not find endpoint" in _refused(sm.update_endpoint, EndpointName="nope", EndpointConfigName="c")
    assert "Could not find endpoint" in _refused(sm.delete_endpoint, EndpointName="nope")
    assert "Could not find endpoint configuration" in _refused(
        sm.create_endpoint, EndpointName="ep", EndpointConfigName="nope"
    )
    assert "Could not find model" in _refused(
        sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[{**_instances(1), "ModelName": "nope"}]
    )
    message = _refused(sm.create_model, ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": SKLEARN_IMAGE})
    assert message == f'Cannot create already existing model "arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/m".'
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[_instances(1)])
    assert "Cannot create already existing endpoint configuration" in _refused(
        sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[_instances(1)]
    )


# -- canary size -----------------------------------------------------------------------------------
def test_a_canary_is_at_most_half_of_the_variants_instances(sm: Any, rules: SageMakerRules) -> None:
    _endpoint(sm, "InService", _instances(1))
    sm.create_endpoint_config(EndpointConfigName="one", ProductionVariants=[_instances(1)])
    message = _refused(
        sm.update_endpoint,
        EndpointName="ep",
        EndpointConfigName="one",
        DeploymentConfig=_canary("CAPACITY_PERCENT", 10),
    )
    assert "less than or equal to 50% of the variant's total instance count" in message
    sm.create_endpoint_config(EndpointConfigName="two", ProductionVariants=[_instances(2)])
    assert "50%" in _refused(
        sm.update_endpoint, EndpointName="ep", EndpointConfigName="two", DeploymentConfig=_canary("INSTANCE_COUNT", 2)
    )
    # accepted: 10% of 2 instances is one instance, half the fleet; all at once needs no size
    rules(
        "UpdateEndpoint",
        {"EndpointName": "ep", "EndpointConfigName": "two", "DeploymentConfig": _canary("CAPACITY_PERCENT", 10)},
    )
    rules(
        "UpdateEndpoint",
        {"EndpointName": "ep", "EndpointConfigName": "two", "DeploymentConfig": _canary("INSTANCE_COUNT", 1)},
    )
    all_at_once = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 300,
        }
    }
    rules("UpdateEndpoint", {"EndpointName": "ep", "EndpointConfigName": "one", "DeploymentConfig": all_at_once})


# -- training --------------------------------------------------------------------------------------
def _training(**extra: Any) -> dict[str, Any]:
    return {
        "TrainingJobName": "job",
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": "s3://artifacts/training"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        **extra,
    }


def test_spot_training_needs_a_max_wait_of_at_least_the_max_runtime(rules: SageMakerRules) -> None:
    for stopping in ({"MaxRuntimeInSeconds": 3600}, {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 1800}):
        with pytest.raises(Invalid, match=r"Invalid MaxWaitTimeInSeconds\. It must be present and be greater"):
            rules("CreateTrainingJob", _training(EnableManagedSpotTraining=True, StoppingCondition=stopping))
    with pytest.raises(Invalid, match="only supported when EnableManagedSpotTraining is set to true"):
        rules("CreateTrainingJob", _training(StoppingCondition={"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 60}))
    spot = {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 3600}
    rules("CreateTrainingJob", _training(EnableManagedSpotTraining=True, StoppingCondition=spot))


def test_a_job_name_is_used_once(rules: SageMakerRules) -> None:
    _backend().reset()
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    moto_ext.record_job(
        _backend(), {**_training(), "TrainingJobArn": f"{arn}:training-job/job", "TrainingJobStatus": "Completed"}
    )
    with pytest.raises(Invalid, match=r"Training job names must be unique .* already exists \(arn:aws:sagemaker:"):
        rules("CreateTrainingJob", _training())
    rules("CreateTrainingJob", _training(TrainingJobName="job-2"))
    processing = {
        "ProcessingJobName": "evaluate",
        "RoleArn": ROLE,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 10}
        },
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE},
    }
    rules("CreateProcessingJob", processing)
    moto_ext.record_job(
        _backend(),
        {**processing, "ProcessingJobArn": f"{arn}:processing-job/evaluate", "ProcessingJobStatus": "Completed"},
    )
    with pytest.raises(Invalid, match="Processing job names must be unique"):
        rules("CreateProcessingJob", processing)
    _backend().reset()
