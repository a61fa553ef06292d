"""Every state machine of the app: traced, every event logged, execution data only when asked for."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.assertions import Template

from stacks.state_machines import LOG_EXECUTION_DATA, logged_state_machine

from .conftest import Synthesized, resources


def test_no_machine_logs_execution_data_by_default(synthesized: Synthesized) -> None:
    machines = {
        f"{stack}/{lid}": machine["Properties"]
        for stack in ("MlopsValidation", "MlopsTraining", "MlopsServing", "MlopsBatch")
        for lid, machine in resources(synthesized.template_json(stack), "AWS::StepFunctions::StateMachine").items()
    }
    assert len(machines) == 4
    for where, props in machines.items():
        assert props["TracingConfiguration"] == {"Enabled": True}, where
        assert props["LoggingConfiguration"]["Level"] == "ALL", where
        assert props["LoggingConfiguration"]["IncludeExecutionData"] is False, where


def _logging(context: dict[str, object]) -> dict[str, object]:
    app = cdk.App(context=context)
    stack = cdk.Stack(app, "S")
    logged_state_machine(
        stack,
        "M",
        start=sfn.Pass(stack, "P"),
        log_group=logs.LogGroup(stack, "L"),
        timeout=cdk.Duration.minutes(5),
    )
    [props] = [
        r["Properties"] for r in Template.from_stack(stack).find_resources("AWS::StepFunctions::StateMachine").values()
    ]
    return props["LoggingConfiguration"]


def test_the_context_flag_turns_execution_data_on() -> None:
    assert _logging({})["IncludeExecutionData"] is False
    assert _logging({LOG_EXECUTION_DATA: "true"})["IncludeExecutionData"] is True
    assert _logging({LOG_EXECUTION_DATA: True})["IncludeExecutionData"] is True
