"""Batch scoring state machine steps: ``prepare`` before the batch transform, ``finish`` after it.

The state machine input is the S3 "Object Created" event of a file under ``batch/<model>/`` in
the incoming bucket; ``prepare`` receives its ``detail``. ``finish`` receives the plan, and the
caught error when the transform failed. AWS clients are created once per execution environment.
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
from pydantic import ConfigDict, Field

from mlops.naming import BATCH_PREFIX
from mlops.services.batch import BatchScorer, BatchSettings
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()

s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")


@functools.cache
def _scorer() -> BatchScorer:
    return BatchScorer(s3, sagemaker, BatchSettings.from_env(dict(os.environ)))


class S3Object(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    key: str
    version_id: str | None = Field(default=None, alias="version-id")


class ObjectCreated(BaseModel):
    model_config = ConfigDict(extra="allow")

    object: S3Object


class PrepareEvent(BaseModel):
    detail: ObjectCreated


class FinishEvent(BaseModel):
    plan: dict[str, Any]
    error: dict[str, Any] | None = None


def _model_of(key: str) -> str:
    """``batch/<model>/...`` -> ``<model>``."""
    return key.removeprefix(BATCH_PREFIX).split("/", 1)[0]


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    obj = parse(event=event, model=PrepareEvent).detail.object
    config = model_config(_model_of(obj.key))
    result = _scorer().prepare(obj.key, obj.version_id, config)
    metrics.add_dimension(name="model", value=config.name)
    metrics.add_metric(name=f"BatchFiles_{result['action']}", unit=MetricUnit.Count, value=1)
    logger.info("batch plan: %s", result["action"], extra={"run": result["run"], "summary": result.get("summary")})
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def finish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parsed = parse(event=event, model=FinishEvent)
    config = model_config(parsed.plan["model"])
    result = _scorer().finish(parsed.plan, config, parsed.error)
    metrics.add_dimension(name="model", value=config.name)
    metrics.add_metric(name=f"BatchRuns_{result['status']}", unit=MetricUnit.Count, value=1)
    logger.info(result["summary"])
    return result
