"""The one way the app's state machines are made.

Each one has X-Ray tracing and logs every event (cdk-nag's AwsSolutions-SF1, SF2) to a
KMS-encrypted log group of its own. Execution data (each state's input and output: S3 keys,
plans, error causes) is left out of the logs unless the context flag
``mlops:log-execution-data`` is true: no event payloads in logs by default. An execution's
data stays readable where Step Functions keeps it, in its history (``mlops executions ID``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

LOG_EXECUTION_DATA = "mlops:log-execution-data"


def log_execution_data(scope: Construct) -> bool:
    value = scope.node.try_get_context(LOG_EXECUTION_DATA)
    return value is True or str(value).lower() == "true"


def logged_state_machine(
    scope: Construct,
    construct_id: str,
    *,
    start: sfn.IChainable,
    log_group: logs.ILogGroup,
    timeout: cdk.Duration,
    comment: str | None = None,
) -> sfn.StateMachine:
    return sfn.StateMachine(
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
