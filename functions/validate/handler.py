"""Validation Lambda: one uploaded object in, a routable validation result out.

Thin on purpose: parse the state machine's payload, hand it to the shared
DatasetValidator, emit metrics. Data problems come back as ``status: failed``;
an exception means infrastructure trouble and is left to the state machine's
Retry/Catch.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import BaseModel, parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from mlops.services.validation import Buckets, DatasetValidator, ValidationRequest
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


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    payload = parse(event=event, model=Payload)
    validator = DatasetValidator(boto3.client("s3"), Buckets.from_env(), model_config)
    result = validator.validate(ValidationRequest(**payload.model_dump()))
    # a duplicate of a validation still running knows no more than that
    logger.append_keys(model=result.get("model"), dataset_version=result.get("dataset_version"))
    if result["duplicate"]:
        logger.info("duplicate delivery: object already validated", extra={"result_status": result["status"]})
        return result
    metrics.add_dimension(name="model", value=result["model"])
    metrics.add_metric(
        name="DatasetsPassed" if result["status"] == "passed" else "DatasetsRejected", unit=MetricUnit.Count, value=1
    )
    metrics.add_metric(name="RowsValidated", unit=MetricUnit.Count, value=result["rows"])
    logger.info(result["summary"])
    return result
