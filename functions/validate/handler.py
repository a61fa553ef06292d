"""Validation Lambda: one uploaded object in, a routable validation result out.

Thin on purpose: parse the state machine's payload, hand it to the shared
DatasetValidator, emit metrics. Data problems come back as ``status: failed``;
a part file of a dataset folder comes back as ``status: waiting`` (``watch: true`` for
the one execution that waits for the commit marker), and the state machine's later
``action: check_commit`` call answers ``committed`` or ``incomplete``. An exception
means infrastructure trouble and is left to the state machine's Retry/Catch.

``record_error`` is the RecordValidationError function's handler (same code, its own role):
the state machine calls it when validation failed for good, to leave a report, quarantine
the object and record its fate (``mlops.services.validation_errors``).
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops.services.validation import Buckets, DatasetValidator, ValidationRequest
from mlops.services.validation_errors import record_validation_error
from mlops.settings import model_config

logger = Logger()
tracer = Tracer()
metrics = Metrics()


class Payload(BaseModel):
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    event_id: str | None = None
    execution_id: str | None = None
    execution_started: str | None = None


class ValidationErrored(Payload):
    error: str
    cause: str = ""


class CheckCommit(BaseModel):
    action: str
    bucket: str
    dataset_prefix: str
    model: str


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    validator = DatasetValidator(boto3.client("s3"), Buckets.from_env(), model_config)
    if event.get("action") == "check_commit":
        check = parse(event=event, model=CheckCommit)
        result = validator.check_commit(check.bucket, check.dataset_prefix, check.model)
        logger.info(result["summary"])
        return result
    payload = parse(event=event, model=Payload)
    result = validator.validate(ValidationRequest(**payload.model_dump()))
    # a duplicate of a validation still running knows no more than that
    logger.append_keys(model=result.get("model"), dataset_version=result.get("dataset_version"))
    if result["duplicate"]:
        logger.info("duplicate delivery: object already validated", extra={"result_status": result["status"]})
        return result
    if result["status"] in ("waiting", "ignored"):  # a part file, or bookkeeping: nothing validated yet
        logger.info(result["summary"])
        return result
    metrics.add_dimension(name="model", value=result["model"])
    metrics.add_metric(
        name="DatasetsPassed" if result["status"] == "passed" else "DatasetsRejected", unit=MetricUnit.Count, value=1
    )
    metrics.add_metric(name="RowsValidated", unit=MetricUnit.Count, value=result["rows"])
    logger.info(result["summary"])
    return result


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def record_error(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failed = parse(event=event, model=ValidationErrored)
    request = ValidationRequest(**failed.model_dump(exclude={"error", "cause"}))
    result = record_validation_error(boto3.client("s3"), Buckets.from_env(), request, failed.error, failed.cause)
    logger.append_keys(model=result["model"], dataset_version=result["dataset_version"])
    metrics.add_dimension(name="model", value=result["model"])
    metrics.add_metric(name="DatasetsErrored", unit=MetricUnit.Count, value=1)
    logger.error(result["summary"])
    return result
