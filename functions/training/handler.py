"""Training state machine steps (one code asset, one Lambda function per handler).

- ``prepare``: lock, pick and split the dataset, find the champion.
- ``gate``: apply the model's approval gate to the evaluation output.
- ``register``: create the model package version with metrics and lineage.
- ``finish``: release the lock and write the run report, on every path.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops.services.training import TrainingSettings, TrainingSteps
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def _steps() -> TrainingSteps:
    return TrainingSteps(boto3.client("s3"), boto3.client("sagemaker"), TrainingSettings.from_env(dict(os.environ)))


def _model(event: dict[str, Any]) -> str:
    model = event.get("model") or (event.get("dataset") or {}).get("model")
    if not model:
        raise ValueError("the event names no model (expected 'model')")
    return str(model)


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    config = model_config(_model(event))
    # "dataset" is the state machine's input: a validation result, or {"model": ...} for a retrain
    run = _steps().prepare(event.get("dataset") or {}, config, str(event.get("execution_id", "")))
    metrics.add_dimension(name="model", value=config.name)
    if run["status"] == "busy":
        logger.warning("training not started: %s", run["reason"])
        metrics.add_metric(name="TrainingSkippedBusy", unit=MetricUnit.Count, value=1)
    else:
        metrics.add_metric(name="TrainingStarted", unit=MetricUnit.Count, value=1)
    return run


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def gate(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = event["run"]
    decision = _steps().evaluate_gate(run, model_config(run["model"]))
    logger.info(decision["summary"], extra={"model": run["model"], "run_id": run["run_id"]})
    return decision


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def register(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = event["run"]
    result = _steps().register(run, event["training"], event["gate"])
    metrics.add_dimension(name="model", value=run["model"])
    metrics.add_metric(name=f"ModelPackages{result['approval_status']}", unit=MetricUnit.Count, value=1)
    logger.info("registered %s as %s", result["model_package_arn"], result["approval_status"])
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def finish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = event.get("run") or {"model": _model(event)}
    outcome = {k: event[k] for k in ("status", "gate", "registration", "error") if k in event}
    return _steps().finish(run, str(event.get("execution_id", "")), outcome)
