"""The one way the app's Lambda functions are made.

Each function gets its own role and its own KMS-encrypted log group, with write access
to that group only (instead of the AWSLambdaBasicExecutionRole managed policy), X-Ray
tracing, and the project's layers. Permissions on data are added by the stack that owns
the function, through ``stacks.grants``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.bundling import ROOT
from stacks.layers import ARCHITECTURE, RUNTIME
from stacks.nag import IAM5, acknowledge

# Lambda's own transient errors (the service, throttling, the client timing out), retried by
# every state machine's Lambda tasks; errors of the function itself are each machine's choice.
LAMBDA_RETRY_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
]


def project_function(
    scope: Construct,
    construct_id: str,
    *,
    code: str | Path,
    handler: str,
    description: str,
    environment: dict[str, str],
    layers: Sequence[lambda_.ILayerVersion],
    key: kms.IKey,
    memory_mb: int,
    timeout: cdk.Duration,
    ephemeral_mb: int = 512,
    removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY,
    log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
    reserved_concurrency: int | None = None,
) -> lambda_.Function:
    """``<id>Fn`` with ``<id>Role`` and ``<id>Logs``; code is a folder relative to the project root."""
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=log_retention,
        encryption_key=key,
        removal_policy=removal_policy,
    )
    role = iam.Role(scope, f"{construct_id}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
    log_group.grant_write(role)
    function = lambda_.Function(
        scope,
        f"{construct_id}Fn",
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        handler=handler,
        code=lambda_.Code.from_asset(str(ROOT / code), exclude=["__pycache__", "*.pyc"]),
        layers=list(layers),
        role=role,
        description=description,
        environment=environment,
        memory_size=memory_mb,
        ephemeral_storage_size=cdk.Size.mebibytes(ephemeral_mb),
        timeout=timeout,
        tracing=lambda_.Tracing.ACTIVE,
        log_group=log_group,
        reserved_concurrent_executions=reserved_concurrency,
    )
    acknowledge(
        role,
        IAM5,
        "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions (tracing is on).",
        ["Resource::*"],
    )
    return function


def invoke_task(
    scope: Construct, state_id: str, fn: lambda_.IFunction, payload: sfn.TaskInput | dict[str, Any], result_path: str
) -> tasks.LambdaInvoke:
    """A state machine's Lambda task: the handler's result at ``result_path``, Lambda's transient errors retried."""
    task = tasks.LambdaInvoke(
        scope,
        state_id,
        lambda_function=fn,
        payload=payload if isinstance(payload, sfn.TaskInput) else sfn.TaskInput.from_object(payload),
        payload_response_only=True,
        result_path=result_path,
        retry_on_service_exceptions=False,
    )
    task.add_retry(errors=LAMBDA_RETRY_ERRORS, interval=cdk.Duration.seconds(2), max_attempts=4, backoff_rate=2)
    return task
