"""Training state machine steps (one code asset, one Lambda function per handler).

- ``prepare``: lock, queue and pick the dataset, split it, find the champion.
- ``gate``: apply the model's approval gate to the evaluation output.
- ``register``: create the model package version with metrics and lineage.
- ``finish``: write the run report, release the lock, start the follow-up run; on every path.
- ``reap``: the "Step Functions Execution Status Change" event of a training execution that
  ended FAILED, TIMED_OUT or ABORTED: finish what its own last step could not.

AWS clients are created once per execution environment and reused by warm invocations.
Events are logged only when ``POWERTOOLS_LOGGER_LOG_EVENT`` asks for it (they carry data).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, envelopes, parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops.services.training import TrainingSettings, TrainingSteps
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()

s3 = boto3.client("s3")
sagemaker = boto3.client("sagemaker")
stepfunctions = boto3.client("stepfunctions")


@functools.cache
def _steps() -> TrainingSteps:
    return TrainingSteps(s3, sagemaker, TrainingSettings.from_env(dict(os.environ)), stepfunctions)


class PrepareEvent(BaseModel):
    dataset: dict[str, Any]  # the execution's input: a validation result, or {"model": ..., "trigger": ...}
    model: str
    execution_id: str
    state_machine_arn: str | None = None


class RunEvent(BaseModel):
    run: dict[str, Any]
    training: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None


class FinishEvent(BaseModel):
    status: str  # registered | failed
    execution_id: str
    state_machine_arn: str | None = None
    run: dict[str, Any] | None = None  # RecordOutcome: the prepared run
    gate: dict[str, Any] | None = None
    registration: dict[str, Any] | None = None
    state: dict[str, Any] | None = None  # RecordFailure: the execution's state when it failed


class ExecutionStatusChange(BaseModel):
    """The ``detail`` of a "Step Functions Execution Status Change" event."""

    executionArn: str  # the event's field names
    stateMachineArn: str
    status: str
    input: str | None = None


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def prepare(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=PrepareEvent)
    config = model_config(request.model)
    run = _steps().prepare(request.dataset, config, request.execution_id, request.state_machine_arn)
    metrics.add_dimension(name="model", value=config.name)
    if run["status"] == "ready":
        metrics.add_metric(name="TrainingStarted", unit=MetricUnit.Count, value=1)
    else:
        logger.info("training not started (%s): %s", run["status"], run["reason"])
        name = {"queued": "TrainingQueued", "no_new_data": "RetrainNotNeeded"}.get(run["status"], "TrainingSkipped")
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    return run


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def gate(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = parse(event=event, model=RunEvent).run
    decision = _steps().evaluate_gate(run, model_config(run["model"]))
    logger.info(decision["summary"], extra={"model": run["model"], "run_id": run["run_id"]})
    return decision


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def register(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=RunEvent)
    if request.training is None or request.gate is None:
        raise ValueError("register needs the training job ('training') and the gate decision ('gate')")
    run = request.run
    result = _steps().register(run, request.training, request.gate)
    metrics.add_dimension(name="model", value=run["model"])
    metrics.add_metric(name=f"ModelPackages{result['approval_status']}", unit=MetricUnit.Count, value=1)
    logger.info("registered %s as %s", result["model_package_arn"], result["approval_status"])
    return result


def _failed_run(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run and the error from the state of an execution that failed at any step (prepare included)."""
    run = state.get("run") if isinstance(state.get("run"), dict) else {}
    model = run.get("model") or state.get("model")
    if not model:
        raise ValueError("the failed execution's state names no model (expected 'model' or 'run.model')")
    return ({**run, "model": model} if run.get("run_id") else {"model": model}), state.get("error") or {}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def finish(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=FinishEvent)
    if request.state is not None:
        run, error = _failed_run(request.state)
        outcome: dict[str, Any] = {"status": request.status, "error": error}
    elif request.run is not None:
        run = request.run
        outcome = {"status": request.status, "gate": request.gate, "registration": request.registration}
    else:
        raise ValueError("finish needs the prepared run ('run') or the failed execution's state ('state')")
    result = _steps().finish(run, request.execution_id, outcome, request.state_machine_arn)
    metrics.add_dimension(name="model", value=str(run["model"]))
    if result.get("follow_up"):
        metrics.add_metric(name="FollowUpStarted", unit=MetricUnit.Count, value=1)
    logger.info("run %s ended %s; follow-up: %s", result.get("run_id"), request.status, result.get("follow_up"))
    return result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def reap(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    change = parse(event=event, model=ExecutionStatusChange, envelope=envelopes.EventBridgeEnvelope)
    started_with = json.loads(change.input or "{}")
    model = started_with.get("model") or (started_with.get("dataset") or {}).get("model")
    if not model:
        logger.warning("execution %s names no model in its input: nothing to reap", change.executionArn)
        return {"execution": change.executionArn, "status": change.status, "model": None}
    result = _steps().reap(change.executionArn, change.status, change.stateMachineArn, str(model))
    logger.info("training execution %s ended %s", change.executionArn, change.status, extra=result)
    return result
