"""The one way the app's state machines are made.

Each one has X-Ray tracing and logs every event (cdk-nag's AwsSolutions-SF1, SF2) to a
KMS-encrypted log group of its own. Execution data (each state's input and output: S3 keys,
plans, error causes) is left out of the logs unless the context flag
``mlops:log-execution-data`` is true: no event payloads in logs by default. An execution's
data stays readable where Step Functions keeps it, in its history (``mlops executions ID``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.nag import IAM5, acknowledge

LOG_EXECUTION_DATA = "mlops:log-execution-data"


def log_execution_data(scope: Construct) -> bool:
    value = scope.node.try_get_context(LOG_EXECUTION_DATA)
    return value is True or str(value).lower() == "true"


def machine_log_group(
    scope: Construct,
    construct_id: str,
    key: kms.IKey,
    *,
    retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.DESTROY,
) -> logs.LogGroup:
    """A state machine's log group, encrypted with the app's key."""
    return logs.LogGroup(scope, construct_id, retention=retention, encryption_key=key, removal_policy=removal_policy)


def logged_state_machine(
    scope: Construct,
    construct_id: str,
    *,
    start: sfn.IChainable,
    log_group: logs.ILogGroup,
    timeout: cdk.Duration,
    comment: str | None = None,
) -> sfn.StateMachine:
    machine = sfn.StateMachine(
        scope,
        construct_id,
        definition_body=sfn.DefinitionBody.from_chainable(start),
        state_machine_type=sfn.StateMachineType.STANDARD,
        timeout=timeout,
        tracing_enabled=True,
        logs=sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=log_execution_data(scope)
        ),
        comment=comment,
    )
    acknowledge(
        machine.role,
        IAM5,
        "CloudWatch Logs delivery and X-Ray actions of Step Functions have no resource-level permissions.",
        ["Resource::*"],
    )
    return machine
