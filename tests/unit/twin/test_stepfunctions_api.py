"""StepFunctionsApi called as the gateway calls it (``handle(Call(...))``), every result
checked against botocore's output shape: strictly (ParamValidator: no unknown member, no
missing required one, right types, HistoryEvent types from the enum) and by a round trip
through moto's json serializer and botocore's json parser, so the shapes cannot drift."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.parsers import create_parser
from botocore.validate import ParamValidator
from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model

from mlops.twin.api import ApiError, Call
from mlops.twin.stepfunctions.api import StepFunctionsApi
from mlops.twin.stepfunctions.service import StepFunctions

MODEL = botocore.session.get_session().get_service_model("stepfunctions")
MOTO_MODEL = get_service_model("stepfunctions")  # the same model, in the shape classes moto's serializer takes
ACCOUNT, REGION = "000000000000", "us-east-1"
ARN = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Pipeline"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/PipelineRole"
FN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"
DEFINITION = {
    "StartAt": "Work",
    "States": {
        "Work": {"Type": "Task", "Resource": FN, "ResultPath": "$.result", "Next": "Check"},
        "Check": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Broken"}],
            "Default": "Fan",
        },
        "Fan": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "Each", "States": {"Each": {"Type": "Pass", "End": True}}},
            "ResultPath": "$.fan",
            "Next": "Both",
        },
        "Both": {
            "Type": "Parallel",
            "Branches": [{"StartAt": "Nap", "States": {"Nap": {"Type": "Wait", "Seconds": 1, "End": True}}}],
            "ResultPath": None,
            "Next": "Done",
        },
        "Done": {"Type": "Succeed"},
        "Broken": {"Type": "Fail", "Error": "Broken", "Cause": "asked to fail"},
    },
}


class Gate:
    """Task dispatcher: returns at once unless the input says ``hold``."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, resource, params, ctx):
        if isinstance(params, dict) and params.get("hold"):
            self.release.wait(10)
        return {"worked": True}


@pytest.fixture
def gate() -> Gate:
    gate = Gate()
    yield gate
    gate.release.set()


@pytest.fixture
def api(tmp_path: Path, gate: Gate) -> StepFunctionsApi:
    sfn = StepFunctions(tmp_path, gate, time_scale=0.001)
    sfn.create_state_machine(
        "Pipeline",
        ARN,
        json.dumps(DEFINITION),
        role_arn=ROLE,
        logging_configuration={"level": "ALL", "includeExecutionData": True},
        tracing_configuration={"enabled": True},
    )
    return StepFunctionsApi(sfn)


def call(api: StepFunctionsApi, operation: str, **params: Any) -> dict[str, Any]:
    """handle() as the gateway calls it, with the result checked against the output shape."""
    result = api.handle(Call("stepfunctions", operation, params))
    check_shape(operation, result)
    return result


def check_shape(operation: str, result: dict[str, Any]) -> None:
    op = MODEL.operation_model(operation)
    report = ParamValidator().validate(result, op.output_shape)
    assert not report.has_errors(), report.generate_report()
    for event in result.get("events", []):
        assert event["type"] in MODEL.shape_for("HistoryEventType").enum
    for key in ("status",):
        if key in result:
            assert result[key] in op.output_shape.members[key].enum
    response = get_serializer_class("stepfunctions", "json")(MOTO_MODEL.operation_model(operation)).serialize(result)
    parsed = create_parser("json").parse(
        {"body": response["body"].encode(), "headers": response["headers"], "status_code": 200}, op.output_shape
    )
    parsed.pop("ResponseMetadata", None)
    assert parsed == result


def error(api: StepFunctionsApi, operation: str, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        api.handle(Call("stepfunctions", operation, params))
    err = info.value
    # Every error is one the service model names for that operation.
    assert err.code in {shape.name for shape in MODEL.operation_model(operation).error_shapes}, err.code
    return err


def start(api: StepFunctionsApi, name: str, payload: dict[str, Any]) -> str:
    return call(api, "StartExecution", stateMachineArn=ARN, name=name, input=json.dumps(payload))["executionArn"]


def wait_done(api: StepFunctionsApi, arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while (described := call(api, "DescribeExecution", executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return described


# -- operations --------------------------------------------------------------------------------
def test_operations_served_and_the_others_not(api):
    assert api.service == "stepfunctions"
    assert api.operations() == {
        "ListStateMachines",
        "DescribeStateMachine",
        "StartExecution",
        "StopExecution",
        "ListExecutions",
        "DescribeExecution",
        "GetExecutionHistory",
    }
    assert api.operations() <= set(MODEL.operation_names)
    with pytest.raises(ApiError) as info:
        api.handle(Call("stepfunctions", "CreateStateMachine", {"name": "x", "definition": "{}", "roleArn": ROLE}))
    assert (info.value.code, info.value.status) == ("NotImplemented", 501)


def test_list_and_describe_state_machines(api):
    listed = call(api, "ListStateMachines")
    (item,) = listed["stateMachines"]
    assert (item["stateMachineArn"], item["name"], item["type"]) == (ARN, "Pipeline", "STANDARD")
    described = call(api, "DescribeStateMachine", stateMachineArn=ARN)
    assert json.loads(described["definition"]) == DEFINITION
    assert described["roleArn"] == ROLE and described["status"] == "ACTIVE"
    assert described["loggingConfiguration"] == {"level": "ALL", "includeExecutionData": True}
    assert described["tracingConfiguration"] == {"enabled": True}
    assert described["creationDate"] == item["creationDate"]


def test_start_describe_and_history_of_a_succeeded_execution(api):
    arn = start(api, "run-1", {"items": [1, 2], "fail": False})
    assert arn == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Pipeline:run-1"
    described = wait_done(api, arn)
    assert described["status"] == "SUCCEEDED" and described["stateMachineArn"] == ARN
    assert json.loads(described["input"]) == {"items": [1, 2], "fail": False}
    assert json.loads(described["output"])["fan"] == [1, 2]
    assert described["stopDate"] >= described["startDate"] and "error" not in described
    events = call(api, "GetExecutionHistory", executionArn=arn)["events"]
    types = [e["type"] for e in events]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    for kind in (
        "TaskScheduled",
        "ChoiceStateEntered",
        "MapIterationStarted",
        "ParallelStateStarted",
        "WaitStateExited",
    ):
        assert kind in types
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["executionStartedEventDetails"]["roleArn"] == ROLE
    assert all(isinstance(e["timestamp"], datetime) for e in events)
    scheduled = next(e for e in events if e["type"] == "TaskScheduled")["taskScheduledEventDetails"]
    assert scheduled["resource"] == FN and scheduled["region"] == REGION


def test_failed_execution_reports_error_and_cause(api):
    arn = start(api, "bad", {"items": [], "fail": True})
    described = wait_done(api, arn)
    assert (described["status"], described["error"], described["cause"]) == ("FAILED", "Broken", "asked to fail")
    assert "output" not in described
    last = call(api, "GetExecutionHistory", executionArn=arn, reverseOrder=True, maxResults=1)["events"][0]
    assert last["executionFailedEventDetails"] == {"error": "Broken", "cause": "asked to fail"}


def test_history_without_execution_data(api):
    arn = start(api, "quiet", {"items": [], "fail": False, "secret": "s"})
    wait_done(api, arn)
    events = call(api, "GetExecutionHistory", executionArn=arn, includeExecutionData=False)["events"]
    details = [v for e in events for k, v in e.items() if k.endswith("EventDetails")]
    assert details and not any("input" in d or "output" in d for d in details)
    with_data = call(api, "GetExecutionHistory", executionArn=arn)["events"]
    assert "secret" in with_data[0]["executionStartedEventDetails"]["input"]


def test_start_is_idempotent_while_running_and_refuses_a_reused_name(api, gate):
    running = {"items": [], "hold": True}
    arn = start(api, "same", running)
    assert start(api, "same", running) == arn  # same name, same input, still running
    err = error(api, "StartExecution", stateMachineArn=ARN, name="same", input=json.dumps({"other": 1}))
    assert err.code == "ExecutionAlreadyExists" and arn in err.message
    gate.release.set()
    wait_done(api, arn)
    assert error(api, "StartExecution", stateMachineArn=ARN, name="same", input=json.dumps(running)).code == (
        "ExecutionAlreadyExists"
    )


def test_start_without_name_or_input(api):
    result = call(api, "StartExecution", stateMachineArn=ARN)
    assert json.loads(call(api, "DescribeExecution", executionArn=result["executionArn"])["input"]) == {}


def test_stop_execution(api):
    arn = start(api, "stop-me", {"items": [], "hold": True})
    stopped = call(api, "StopExecution", executionArn=arn, error="Operator", cause="no longer needed")
    described = wait_done(api, arn)
    assert (described["status"], described["error"], described["cause"]) == ("ABORTED", "Operator", "no longer needed")
    assert described["stopDate"] == stopped["stopDate"]
    events = call(api, "GetExecutionHistory", executionArn=arn)["events"]
    assert events[-1]["type"] == "ExecutionAborted"
    assert call(api, "StopExecution", executionArn=arn)["stopDate"] == stopped["stopDate"]  # already stopped


# -- listing and pagination --------------------------------------------------------------------
def test_list_executions_newest_first_filtered_and_paginated(api, gate):
    done = [start(api, f"d{i}", {"items": [], "fail": False}) for i in range(5)]
    for arn in done:
        wait_done(api, arn)
    held = start(api, "held", {"items": [], "hold": True})
    everything = call(api, "ListExecutions", stateMachineArn=ARN)["executions"]
    assert [e["name"] for e in everything] == ["held", "d4", "d3", "d2", "d1", "d0"]
    assert "stopDate" not in everything[0] and "stopDate" in everything[1]
    assert [
        e["executionArn"]
        for e in call(api, "ListExecutions", stateMachineArn=ARN, statusFilter="RUNNING")["executions"]
    ] == [held]
    pages, token = [], None
    while True:
        params = {"stateMachineArn": ARN, "statusFilter": "SUCCEEDED", "maxResults": 2}
        page = call(api, "ListExecutions", **params, **({"nextToken": token} if token else {}))
        pages.append([e["name"] for e in page["executions"]])
        if len(pages) == 1:
            start(api, "newer", {"items": [], "fail": False})  # does not shift the next pages
        token = page.get("nextToken")
        if not token:
            break
    assert pages == [["d4", "d3"], ["d2", "d1"], ["d0"]]


def test_history_pagination_both_ways(api):
    arn = start(api, "pages", {"items": [1, 2, 3], "fail": False})
    wait_done(api, arn)
    everything = call(api, "GetExecutionHistory", executionArn=arn)["events"]
    for reverse in (False, True):
        seen, token = [], None
        while True:
            params = {"executionArn": arn, "maxResults": 4, "reverseOrder": reverse}
            page = call(api, "GetExecutionHistory", **params, **({"nextToken": token} if token else {}))
            assert len(page["events"]) <= 4
            seen += [e["id"] for e in page["events"]]
            token = page.get("nextToken")
            if not token:
                break
        ids = [e["id"] for e in everything]
        assert seen == (ids[::-1] if reverse else ids)


# -- errors --------------------------------------------------------------------------------------
def test_errors_as_the_model_names_them(api):
    missing_machine = ARN.replace("Pipeline", "Nope")
    assert error(api, "DescribeStateMachine", stateMachineArn=missing_machine).code == "StateMachineDoesNotExist"
    assert error(api, "StartExecution", stateMachineArn=missing_machine).code == "StateMachineDoesNotExist"
    assert error(api, "ListExecutions", stateMachineArn=missing_machine).code == "StateMachineDoesNotExist"
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:Pipeline:nope"
    for operation in ("DescribeExecution", "GetExecutionHistory", "StopExecution"):
        assert error(api, operation, executionArn=missing).code == "ExecutionDoesNotExist"
    assert error(api, "DescribeStateMachine", stateMachineArn="not-an-arn").code == "InvalidArn"
    assert error(api, "DescribeExecution", executionArn=ARN).code == "InvalidArn"  # a machine, not an execution
    assert error(api, "DescribeStateMachine", stateMachineArn=missing).code == "InvalidArn"
    for name in ("has space", "a/b", "x" * 81, "", "semi;colon"):
        assert error(api, "StartExecution", stateMachineArn=ARN, name=name).code == "InvalidName"
    assert error(api, "StartExecution", stateMachineArn=ARN, input="{not json").code == "InvalidExecutionInput"
    assert error(api, "ListExecutions").code == "ValidationException"
    assert error(api, "ListExecutions", stateMachineArn=ARN, statusFilter="DONE").code == "ValidationException"
    assert error(api, "ListExecutions", stateMachineArn=ARN, maxResults=1001).code == "ValidationException"
    assert error(api, "ListExecutions", stateMachineArn=ARN, nextToken="garbage").code == "InvalidToken"
    assert error(api, "ListStateMachines", nextToken="garbage").code == "InvalidToken"


def test_a_token_only_continues_its_own_query(api):
    for i in range(3):
        wait_done(api, start(api, f"t{i}", {"items": [], "fail": False}))
    token = call(api, "ListExecutions", stateMachineArn=ARN, maxResults=1)["nextToken"]
    params = {"stateMachineArn": ARN, "statusFilter": "FAILED", "nextToken": token}
    assert error(api, "ListExecutions", **params).code == "InvalidToken"
