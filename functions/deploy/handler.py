"""Deploy state machine steps: ``plan`` before the SageMaker calls, ``record`` after.

The state machine input is the "SageMaker Model Package State Change" event.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops.services.deployment import Deployer, DeploySettings
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def _deployer() -> Deployer:
    return Deployer(
        boto3.client("sagemaker"),
        boto3.client("s3"),
        boto3.client("application-autoscaling"),
        DeploySettings.from_env(dict(os.environ)),
    )


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def plan(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event["detail"]
    result = _deployer().plan(detail, model_config(detail["ModelPackageGroupName"]))
    logger.info("deployment plan: %s", result.get("action"), extra={"package": detail.get("ModelPackageArn")})
    return result


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    plan_ = event["plan"]
    result = _deployer().record(plan_, model_config(plan_["model"]))
    metrics.add_dimension(name="model", value=plan_["model"])
    metrics.add_metric(name=f"Deployments_{result['status']}", unit=MetricUnit.Count, value=1)
    logger.info(result["message"])
    return result
