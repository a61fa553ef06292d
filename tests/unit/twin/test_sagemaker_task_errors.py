"""SageMaker integrations on the twin name their errors as Step Functions does in AWS.

Step Functions reports SageMaker's unmodelled errors (ValidationException, ThrottlingException,
AccessDeniedException) as ``SageMaker.AmazonSageMakerException`` with the error code in the
cause, and its modelled ones by their SDK class (``SageMaker.ResourceLimitExceededException``):
the deploy and training machines' Catch, Retry and throttling Choice rely on both.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from mlops.twin.api import ApiError
from mlops.twin.iam import Unenforced
from mlops.twin.stepfunctions.asl import StatesError
from mlops.twin.stepfunctions.tasks import TaskDispatcher
from stacks.sagemaker_retries import SAGEMAKER_SERVICE_ERROR, THROTTLED_CAUSE

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:Deploy"
CTX = SimpleNamespace(execution_arn="arn:aws:states:us-east-1:123456789012:execution:Deploy:run-1")
UPDATE = "arn:aws:states:::sagemaker:updateEndpoint"


class Twin:
    """What the dispatcher needs of the twin: the machine's role, IAM, SageMaker as that role."""

    def __init__(self, sagemaker: Any, iam: Any = None, rules: Any = None) -> None:
        self.state_machines = {MACHINE: SimpleNamespace(role_arn="arn:aws:iam::123456789012:role/DeployRole")}
        self.iam = iam or Unenforced()
        self.sagemaker = sagemaker
        self.sagemaker_rules = rules or (lambda operation, params: None)

    def client(self, service: str, role: str) -> Any:
        assert service == "sagemaker" and role.endswith("/DeployRole")
        return self.sagemaker


def _error(twin: Twin, resource: str, params: dict[str, Any]) -> StatesError:
    with pytest.raises(StatesError) as info:
        TaskDispatcher(twin)(resource, params, CTX)
    return info.value


def test_a_refused_request_is_an_amazon_sagemaker_exception_with_the_code_in_the_cause() -> None:
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="us-east-1")
        create = "arn:aws:states:::sagemaker:createEndpoint"  # its endpoint config does not exist
        error = _error(Twin(sagemaker), create, {"EndpointName": "tumor-classifier", "EndpointConfigName": "c"})
    assert error.error == SAGEMAKER_SERVICE_ERROR == "SageMaker.AmazonSageMakerException"
    assert "(Service: AmazonSageMaker; Status Code: 400; Error Code: ValidationException; Request ID: " in error.cause
    assert not fnmatchcase(error.cause, THROTTLED_CAUSE)  # the deploy machine notifies it at once


class _Refusing:
    """A SageMaker client whose UpdateEndpoint answers with an error SageMaker sends."""

    def __init__(self, code: str, message: str, status: int) -> None:
        self.response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}

    def update_endpoint(self, **params: Any) -> None:
        raise ClientError(self.response, "UpdateEndpoint")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "name"),
    [
        ("ThrottlingException", 400, "SageMaker.AmazonSageMakerException"),
        ("AccessDeniedException", 400, "SageMaker.AmazonSageMakerException"),  # the role may not call it
        ("ResourceLimitExceeded", 400, "SageMaker.ResourceLimitExceededException"),
        ("ResourceNotFound", 400, "SageMaker.ResourceNotFoundException"),
        ("ResourceInUse", 400, "SageMaker.ResourceInUseException"),
    ],
)
def test_modelled_errors_keep_their_class_and_throttling_is_told_by_the_cause(
    code: str, status: int, name: str
) -> None:
    error = _error(Twin(_Refusing(code, "Rate exceeded", status)), UPDATE, {"EndpointName": "e"})
    assert error.error == name and f"Error Code: {code};" in error.cause
    assert fnmatchcase(error.cause, THROTTLED_CAUSE) is (code == "ThrottlingException")


def test_a_sync_integration_the_role_may_not_use_is_an_amazon_sagemaker_exception() -> None:
    class Denying:
        def authorize_as(self, *args: Any) -> None:
            raise ApiError(
                "AccessDeniedException",
                "User: arn:aws:sts::123456789012:assumed-role/DeployRole/twin is "
                "not authorized to perform: sagemaker:ListTags",
                400,
            )

    sync = "arn:aws:states:::sagemaker:createTrainingJob.sync"
    error = _error(Twin(None, iam=Denying()), sync, {"TrainingJobName": "j"})
    assert error.error == "SageMaker.AmazonSageMakerException"
    assert "not authorized to perform: sagemaker:ListTags" in error.cause
    assert "Error Code: AccessDeniedException;" in error.cause


def test_a_job_request_sagemaker_refuses_fails_the_sync_integration_the_same_way() -> None:
    def rules(operation: str, params: dict[str, Any]) -> None:
        raise ApiError("ValidationException", "MaxWaitTimeInSeconds must be at least MaxRuntimeInSeconds")

    twin = Twin(None, rules=rules)
    never = SimpleNamespace(train=lambda params: pytest.fail("a refused job must not run"))
    twin.jobs = SimpleNamespace(as_role=lambda params: never)  # type: ignore[attr-defined]
    error = _error(twin, "arn:aws:states:::sagemaker:createTrainingJob.sync", {"TrainingJobName": "j"})
    assert error.error == "SageMaker.AmazonSageMakerException" and "Error Code: ValidationException" in error.cause
