"""Deploy state machine steps: ``plan`` before the SageMaker calls, ``record`` after, ``release`` on failure.

The state machine input is the "SageMaker Model Package State Change" event; ``plan``
receives its ``detail`` and the execution's id, which owns the endpoint's deployment lock
from ``plan`` to ``record`` (or ``release``, on the failure path). AWS clients are created
once per execution environment and reused by warm invocations; events are logged only
when ``POWERTOOLS_LOGGER_LOG_EVENT`` asks for it.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ConfigDict

from mlops.services.deployment import Deployer, DeploySettings
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()

sagemaker = boto3.client("sagemaker")
s3 = boto3.client("s3")
autoscaling = boto3.client("application-autoscaling")
stepfunctions = boto3.client("stepfunctions")


@functools.cache
def _deployer() -> Deployer:
    return Deployer(sagemaker, s3, autoscaling, stepfunctions, DeploySettings.from_env(dict(os.environ)))


class PackageStateChange(BaseModel):
    """The ``detail`` of a "SageMaker Model Package State Change" event (the fields plan reads; others kept)."""

    model_config = ConfigDict(extra="allow")

    ModelPackageGroupName: str
    ModelPackageArn: str


class PlanEvent(BaseModel):
    detail: PackageStateChange
    execution_id: str


class ReleaseEvent(BaseModel):
    model: str
    execution_id: str


class RecordEvent(BaseModel):
    plan: dict[str, Any]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=PlanEvent)
    detail = request.detail
    result = _deployer().plan(detail.model_dump(), model_config(detail.ModelPackageGroupName), request.execution_id)
    logger.info("deployment plan: %s", result.get("action"), extra={"package": detail.ModelPackageArn})
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    plan_ = parse(event=event, model=RecordEvent).plan
    result = _deployer().record(plan_, model_config(plan_["model"]))
    metrics.add_dimension(name="model", value=plan_["model"])
    metrics.add_metric(name=f"Deployments_{result['status']}", unit=MetricUnit.Count, value=1)
    logger.info(result["message"])
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def release(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=ReleaseEvent)
    released = _deployer().release(request.model, request.execution_id)
    logger.info("deployment lock of %s released: %s", request.model, released)
    return {"lock_released": released}
