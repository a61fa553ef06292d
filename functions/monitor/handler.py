"""Scheduled model monitor: drift and model quality for one model, published as metrics.

The schedule rule passes ``{"model": "<name>"}``. Metrics go out through Powertools
Metrics (CloudWatch Embedded Metric Format) in the ``Mlops`` namespace with a ``model``
dimension, which the model's drift and quality alarms watch. AWS clients are created
once per execution environment; events are logged only when
``POWERTOOLS_LOGGER_LOG_EVENT`` asks for it.
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

from mlops.services.monitoring import ModelMonitor, MonitorSettings, summary
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()

s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")


@functools.cache
def _monitor() -> ModelMonitor:
    return ModelMonitor(s3, sagemaker, MonitorSettings.from_env(dict(os.environ)))


class MonitorEvent(BaseModel):
    """The schedule rule's constant input."""

    model: str


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = model_config(parse(event=event, model=MonitorEvent).model)
    result = _monitor().run(config)
    metrics.add_dimension(name="model", value=config.name)
    metrics.add_metric(name="CapturedRows", unit=MetricUnit.Count, value=result["captured_rows"])
    if result["drift"]:
        metrics.add_metric(name="DriftedFeatureShare", unit=MetricUnit.NoUnit, value=result["drift"]["drifted_share"])
        metrics.add_metric(name="MaxFeaturePSI", unit=MetricUnit.NoUnit, value=result["drift"]["max_psi"])
    quality = result["quality"]
    if quality and quality["value"] is not None:
        metrics.add_metric(name="ModelQuality", unit=MetricUnit.NoUnit, value=quality["value"])
    for problem in (quality or {}).get("problems", []):
        logger.warning("ground truth not usable: %s", problem)
    logger.info(summary(result))
    return result
