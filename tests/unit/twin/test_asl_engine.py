"""Engine API: history shape, execution lifecycle, idempotency, stop, timeouts, validate."""

import json
import threading
from datetime import datetime

import pytest

from mlops.twin.stepfunctions.asl import AslEngine, Execution, ExecutionAlreadyExists, TaskFailed

ARN = "arn:aws:states:eu-west-1:111122223333:stateMachine:Pipeline"
FN = "arn:aws:lambda:eu-west-1:111122223333:function:fn"
TASK = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": FN, "End": True}}}


def engine(handler=lambda p, c: {"ok": p}):
    return AslEngine(lambda resource, parameters, ctx: handler(parameters, ctx), time_scale=0.001)


def blocking_engine():
    release = threading.Event()
    return engine(lambda p, c: release.wait(5) and "released"), release


def test_simple_task_history_sequence():
    ex = engine().run(ARN, TASK, {"x": 1}, "e1")
    assert [(e["id"], e["previousEventId"], e["type"]) for e in ex.history] == [
        (1, 0, "ExecutionStarted"),
        (2, 1, "TaskStateEntered"),
        (3, 2, "TaskScheduled"),
        (4, 3, "TaskStarted"),
        (5, 4, "TaskSucceeded"),
        (6, 5, "TaskStateExited"),
        (7, 6, "ExecutionSucceeded"),
    ]
    events = {e["type"]: e for e in ex.history}
    assert events["ExecutionStarted"]["executionStartedEventDetails"] == {"input": '{"x":1}'}
    assert events["TaskStateEntered"]["stateEnteredEventDetails"] == {"name": "T", "input": '{"x":1}'}
    assert events["TaskScheduled"]["taskScheduledEventDetails"] == {
        "resourceType": "lambda",
        "resource": FN,
        "region": "eu-west-1",
        "parameters": '{"x":1}',
    }
    assert json.loads(events["TaskSucceeded"]["taskSucceededEventDetails"]["output"]) == {"ok": {"x": 1}}
    assert events["TaskStateExited"]["stateExitedEventDetails"]["name"] == "T"
    assert json.loads(events["ExecutionSucceeded"]["executionSucceededEventDetails"]["output"]) == {"ok": {"x": 1}}
    assert all(datetime.fromisoformat(e["timestamp"]).tzinfo for e in ex.history)


def test_failed_task_history():
    def fail(p, c):
        raise TaskFailed("E", "c")

    ex = engine(fail).run(ARN, TASK, {}, "e1")
    types = [e["type"] for e in ex.history]
    assert types[-2:] == ["TaskFailed", "ExecutionFailed"]
    assert ex.history[-2]["taskFailedEventDetails"] == {
        "error": "E",
        "cause": "c",
        "resourceType": "lambda",
        "resource": FN,
    }
    assert ex.history[-1]["executionFailedEventDetails"] == {"error": "E", "cause": "c"}


@pytest.mark.parametrize(
    ("resource", "kind", "short"),
    [
        ("arn:aws:states:::lambda:invoke", "lambda", "invoke"),
        ("arn:aws:states:::sagemaker:createTrainingJob.sync", "sagemaker", "createTrainingJob.sync"),
        ("arn:aws:states:::aws-sdk:s3:getObject", "aws-sdk:s3", "getObject"),
        (FN, "lambda", FN),
    ],
)
def test_resource_type_split(resource, kind, short):
    definition = {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": resource, "End": True}}}
    ex = engine().run(ARN, definition, {}, "e")
    details = next(e for e in ex.history if e["type"] == "TaskStarted")["taskStartedEventDetails"]
    assert details == {"resourceType": kind, "resource": short}


def test_execution_fields():
    ex = engine().run(ARN, TASK, {"x": 1}, "run-7")
    assert ex.arn == "arn:aws:states:eu-west-1:111122223333:execution:Pipeline:run-7"
    assert (ex.name, ex.state_machine_arn, ex.status, ex.input) == ("run-7", ARN, "SUCCEEDED", {"x": 1})
    assert datetime.fromisoformat(ex.start_date) <= datetime.fromisoformat(ex.stop_date)
    assert ex.failed_state() is None


def test_start_execution_returns_running_then_completes():
    eng, release = blocking_engine()
    ex = eng.start_execution(ARN, TASK, {}, "bg")
    assert ex.status == "RUNNING" and not ex.wait(0.05)
    release.set()
    assert ex.wait(5) and ex.status == "SUCCEEDED" and ex.output == "released"


def test_same_name_same_input_while_running_is_idempotent():
    eng, release = blocking_engine()
    first = eng.start_execution(ARN, TASK, {"a": 1}, "dup")
    assert eng.start_execution(ARN, TASK, {"a": 1}, "dup") is first
    with pytest.raises(ExecutionAlreadyExists):
        eng.start_execution(ARN, TASK, {"a": 2}, "dup")
    release.set()
    first.wait(5)
    with pytest.raises(ExecutionAlreadyExists):
        eng.start_execution(ARN, TASK, {"a": 1}, "dup")
    other_machine = ARN.replace("Pipeline", "Other")
    assert eng.run(other_machine, TASK, {"a": 1}, "dup").status == "SUCCEEDED"


def test_stop_aborts():
    eng, release = blocking_engine()
    ex = eng.start_execution(ARN, TASK, {}, "s")
    eng.stop(ex.arn, error="User", cause="stopped by test")
    assert ex.wait(1) and (ex.status, ex.error, ex.cause) == ("ABORTED", "User", "stopped by test")
    assert ex.history[-1]["type"] == "ExecutionAborted"
    release.set()
    assert eng.describe(ex.arn).status == "ABORTED"


def test_stop_interrupts_wait_state():
    eng = AslEngine(lambda *a: None, time_scale=1.0)
    ex = eng.start_execution(
        ARN, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}}, {}, "w"
    )
    eng.stop(ex.arn)
    assert ex.wait(1) and ex.status == "ABORTED"


def test_execution_timeout():
    definition = {**TASK, "TimeoutSeconds": 2}
    eng = AslEngine(lambda *a: threading.Event().wait(3), time_scale=0.01)
    ex = eng.run(ARN, definition, {}, "t")
    assert (ex.status, ex.error) == ("TIMED_OUT", "States.Timeout")
    assert ex.history[-1]["type"] == "ExecutionTimedOut"


def test_describe_and_list():
    eng = engine()
    a = eng.run(ARN, TASK, {}, "a")
    b = eng.run(ARN.replace("Pipeline", "Other"), TASK, {}, "b")
    assert eng.describe(a.arn) is a
    assert eng.list_executions(ARN) == [a]
    assert {e.name for e in eng.list_executions()} == {"a", "b"} and b in eng.list_executions()
    with pytest.raises(KeyError):
        eng.describe(ARN + ":nope")


def test_to_dict_from_dict_roundtrip():
    ex = engine().run(ARN, TASK, {"x": [1, 2]}, "rt")
    data = json.loads(json.dumps(ex.to_dict()))
    assert set(data) == {
        "arn", "name", "state_machine_arn", "status", "input", "output", "error", "cause",
        "start_date", "stop_date", "history",
    }  # fmt: skip
    copy = Execution.from_dict(data)
    assert copy.to_dict() == ex.to_dict() and copy.wait(0)


def test_failed_state_survives_roundtrip():
    definition = {
        "StartAt": "P",
        "States": {
            "P": {"Type": "Pass", "Next": "F"},
            "F": {"Type": "Fail", "Error": "E"},
        },
    }
    ex = engine().run(ARN, definition, {}, "f")
    assert Execution.from_dict(ex.to_dict()).failed_state() == "F"


def test_invalid_definition_fails_execution():
    ex = engine().run(ARN, {"StartAt": "Nope", "States": {"A": {"Type": "Pass", "End": True}}}, {}, "bad")
    assert ex.status == "FAILED" and ex.error == "States.Runtime"


# -- validate() -----------------------------------------------------------------------
VALID = {
    "StartAt": "C",
    "TimeoutSeconds": 60,
    "States": {
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.x", "StringEquals": "a", "Next": "T"}],
            "Default": "M",
        },
        "T": {
            "Type": "Task",
            "Resource": FN,
            "Parameters": {"v.$": "States.Format('{}', $.x)"},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "BackoffRate": 1.5}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "F"}],
            "Next": "W",
        },
        "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "P"},
        "P": {"Type": "Parallel", "Branches": [{"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}], "End": True},
        "M": {
            "Type": "Map",
            "ItemProcessor": {"StartAt": "Y", "States": {"Y": {"Type": "Pass", "End": True}}},
            "End": True,
        },
        "F": {"Type": "Fail", "ErrorPath": "$.err.Error"},
    },
}


def test_validate_accepts_valid_definition():
    assert engine().validate(VALID) == []


def mutated(path, value):
    definition = json.loads(json.dumps(VALID))
    target = definition
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return definition


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("States", "W", "Type"), "Sleep", "at /States/W/Type"),
        (("States", "T", "Next"), None, "Exactly one of the fields 'Next' and 'End: true' is required at /States/T"),
        (
            ("States", "T", "Next"),
            "Nowhere",
            "MISSING_TRANSITION_TARGET: Missing 'Next' target: Nowhere at /States/T/Next",
        ),
        (("StartAt",), "Missing", "at /StartAt"),
        (
            ("States", "T", "Parameters"),
            {"v.$": "States.Nope($.x)"},
            "'v.$' must be a valid JSONPath or a valid intrinsic",
        ),
        (("States", "T", "Parameters"), {"v.$": "$.a[x"}, "'v.$' must be a valid JSONPath at /States/T/Parameters"),
        (("States", "T", "ResultPath"), "$.a[*]", "'ResultPath' must be a valid JSONPath at /States/T/ResultPath"),
        (("States", "T", "InputPath"), "nope", "at /States/T/InputPath"),
        (
            ("States", "T", "Retry"),
            [{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["E"]}],
            "States.ALL must appear alone",
        ),
        (("States", "T", "Catch"), [{"ErrorEquals": ["E"]}], "These fields are required: [Next] at /States/T/Catch[0]"),
        (
            ("States", "C", "Choices"),
            [{"Variable": "$.x", "Nope": 1, "Next": "T"}],
            "Field 'Nope' is not supported at /States/C/Choices[0]",
        ),
        (("States", "W", "Seconds"), 5, "Exactly one of the fields 'Seconds'"),
        (
            ("States", "M", "ItemReader"),
            {"Resource": "arn:aws:states:::s3:getObject"},
            "/States/M/ItemReader: not run by the twin",
        ),
        (("States", "M", "ResultWriter"), {}, "/States/M/ResultWriter: not run by the twin"),
        (
            ("States", "P", "Branches"),
            [{"StartAt": "X", "States": {"X": {"Type": "Pass"}}}],
            "at /States/P/Branches[0]/States/X",
        ),
        (("States", "Orphan"), {"Type": "Succeed"}, 'State "Orphan" is not reachable. at /States/Orphan'),
        (("States", "P", "Next"), "F", "Exactly one of the fields 'Next' and 'End: true' is required at /States/P"),
    ],
)
def test_validate_reports_problems(path, value, needle):
    problems = engine().validate(mutated(path, value))
    assert any(needle in problem for problem in problems), problems
