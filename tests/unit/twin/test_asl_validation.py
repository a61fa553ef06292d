"""Definitions CreateStateMachine refuses: InvalidDefinition, AWS's codes and locations.

Each case is a valid definition with one change AWS rejects; the test fails if the twin
accepts it (or reports it with another code or at another place).
"""

import copy

import pytest

from mlops.twin.stepfunctions.asl import validation
from mlops.twin.stepfunctions.asl.diagnostics import Diagnostic, InvalidDefinition

FN = "arn:aws:lambda:us-east-1:123456789012:function:fn"
BASE = {
    "Comment": "every state type",
    "StartAt": "Pass",
    "TimeoutSeconds": 60,
    "States": {
        "Pass": {"Type": "Pass", "Result": {"x": 1}, "ResultPath": "$.p", "Next": "Task"},
        "Task": {
            "Type": "Task",
            "Resource": FN,
            "Parameters": {"a.$": "$.p", "b.$": "States.Format('{}', $.p.x)", "c.$": "$$.Execution.Id"},
            "ResultSelector": {"r.$": "$.Payload"},
            "ResultPath": "$.t",
            "TimeoutSeconds": 30,
            "HeartbeatSeconds": 10,
            "Retry": [
                {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 1, "BackoffRate": 2.0, "MaxAttempts": 2}
            ],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Fail"}],
            "Next": "Choice",
        },
        "Choice": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.t.r", "IsPresent": True, "Next": "Wait"}],
            "Default": "Parallel",
        },
        "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Parallel"},
        "Parallel": {
            "Type": "Parallel",
            "Branches": [{"StartAt": "B1", "States": {"B1": {"Type": "Pass", "End": True}}}],
            "ResultPath": "$.par",
            "Next": "Map",
        },
        "Map": {
            "Type": "Map",
            "ItemsPath": "$.items",
            "ItemSelector": {"item.$": "$$.Map.Item.Value"},
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "M1",
                "States": {"M1": {"Type": "Succeed"}},
            },
            "MaxConcurrency": 2,
            "OutputPath": "$[0,1]",
            "Next": "Done",
        },
        "Done": {"Type": "Succeed", "OutputPath": "$"},
        "Fail": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"},
    },
}


def changed(*edits):
    """BASE with edits applied: (path tuple, value); value None deletes."""
    definition = copy.deepcopy(BASE)
    for path, value in edits:
        target = definition
        for key in path[:-1]:
            target = target[key]
        if value is None:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return definition


def errors(definition):
    return validation.check(definition).errors


def test_base_definition_is_valid():
    found = validation.check(BASE)
    assert found.errors == [] and found.unsupported == []


SCHEMA = "SCHEMA_VALIDATION_FAILED"


@pytest.mark.parametrize(
    ("edits", "code", "location"),
    [
        # unknown fields, anywhere
        ([(("Version2",), "1.0")], SCHEMA, None),
        ([(("States", "Pass", "Resulte"), 1)], SCHEMA, "/States/Pass"),
        ([(("States", "Task", "Retry", 0, "Interval"), 1)], SCHEMA, "/States/Task/Retry[0]"),
        ([(("States", "Task", "Catch", 0, "Then"), "Fail")], SCHEMA, "/States/Task/Catch[0]"),
        ([(("States", "Parallel", "Branches", 0, "TimeoutSeconds"), 5)], SCHEMA, "/States/Parallel/Branches[0]"),
        # fields not allowed for the state type
        ([(("States", "Map", "TimeoutSeconds"), 5)], SCHEMA, "/States/Map"),
        ([(("States", "Parallel", "TimeoutSeconds"), 5)], SCHEMA, "/States/Parallel"),
        ([(("States", "Pass", "Catch"), [{"ErrorEquals": ["States.ALL"], "Next": "Fail"}])], SCHEMA, "/States/Pass"),
        ([(("States", "Wait", "Retry"), [{"ErrorEquals": ["States.ALL"]}])], SCHEMA, "/States/Wait"),
        ([(("States", "Choice", "ResultPath"), "$.x")], SCHEMA, "/States/Choice"),
        ([(("States", "Choice", "Next"), "Wait")], SCHEMA, "/States/Choice"),
        ([(("States", "Done", "End"), True)], SCHEMA, "/States/Done"),
        ([(("States", "Fail", "InputPath"), "$")], SCHEMA, "/States/Fail"),
        ([(("States", "Wait", "Parameters"), {})], SCHEMA, "/States/Wait"),
        ([(("States", "Pass", "ResultSelector"), {})], SCHEMA, "/States/Pass"),
        ([(("States", "Task", "Output"), "{% $states.result %}")], SCHEMA, "/States/Task"),  # JSONata only
        # ResultPath: a reference path into the state's data, never the context object
        ([(("States", "Pass", "ResultPath"), "$$.Execution.Name")], SCHEMA, "/States/Pass/ResultPath"),
        ([(("States", "Task", "ResultPath"), "$$")], SCHEMA, "/States/Task/ResultPath"),
        ([(("States", "Task", "Catch", 0, "ResultPath"), "$$.x")], SCHEMA, "/States/Task/Catch[0]/ResultPath"),
        ([(("States", "Task", "ResultPath"), "$.a[0,1]")], SCHEMA, "/States/Task/ResultPath"),
        ([(("States", "Map", "ItemsPath"), "$.items[*]")], SCHEMA, "/States/Map/ItemsPath"),
        # paths and payload templates
        ([(("States", "Task", "InputPath"), "input")], SCHEMA, "/States/Task/InputPath"),
        ([(("States", "Task", "Parameters"), {"JobName.$": "foo"})], SCHEMA, "/States/Task/Parameters"),
        ([(("States", "Task", "Parameters"), {"a": {"b.$": "States.Nope()"}})], SCHEMA, "/States/Task/Parameters/a"),
        ([(("States", "Task", "Parameters"), {"a": 1, "a.$": "$.x"})], SCHEMA, "/States/Task/Parameters"),
        # required fields and values
        ([(("States", "Choice", "Choices"), None)], SCHEMA, "/States/Choice"),
        ([(("States", "Task", "Resource"), None)], SCHEMA, "/States/Task"),
        ([(("States", "Task", "Resource"), "createToken")], "INVALID_RESOURCE", "/States/Task/Resource"),
        ([(("States", "Task", "TimeoutSeconds"), 0)], SCHEMA, "/States/Task/TimeoutSeconds"),
        ([(("States", "Task", "HeartbeatSeconds"), 30)], SCHEMA, "/States/Task/HeartbeatSeconds"),
        ([(("States", "Task", "TimeoutSecondsPath"), "$.t")], SCHEMA, "/States/Task"),
        ([(("States", "Task", "Retry", 0, "BackoffRate"), 0.5)], SCHEMA, "/States/Task/Retry[0]/BackoffRate"),
        ([(("States", "Task", "Retry", 0, "ErrorEquals"), [])], SCHEMA, "/States/Task/Retry[0]"),
        ([(("States", "Task", "Catch", 0, "ErrorEquals"), ["States.ALL", "X"])], SCHEMA, "/States/Task/Catch[0]"),
        ([(("States", "Wait", "Seconds"), -1)], SCHEMA, "/States/Wait/Seconds"),
        ([(("States", "Wait", "Timestamp"), "2024-01-01T00:00:00Z")], SCHEMA, "/States/Wait"),
        ([(("States", "Fail", "Error"), "E")], SCHEMA, "/States/Fail"),
        ([(("States", "Choice", "Choices", 0, "NumericEquals"), 1)], SCHEMA, "/States/Choice/Choices[0]"),
        ([(("States", "Choice", "Choices", 0, "IsPresent"), "yes")], SCHEMA, "/States/Choice/Choices[0]/IsPresent"),
        ([(("States", "Map", "ItemProcessor", "ProcessorConfig", "Mode"), "PARALLEL")], SCHEMA, None),
        ([(("TimeoutSeconds",), "60")], SCHEMA, "/TimeoutSeconds"),
        ([(("States", "Pass", "Next"), None)], SCHEMA, "/States/Pass"),
        # transitions, terminal states, names
        ([(("States", "Wait", "Next"), "Nope")], "MISSING_TRANSITION_TARGET", "/States/Wait/Next"),
        ([(("States", "Choice", "Default"), "Nope")], "MISSING_TRANSITION_TARGET", "/States/Choice/Default"),
        ([(("States", "Task", "Catch", 0, "Next"), "Nope")], "MISSING_TRANSITION_TARGET", "/States/Task/Catch[0]/Next"),
        ([(("States", "Orphan"), {"Type": "Succeed"})], "MISSING_TRANSITION_TARGET", "/States/Orphan"),
        (
            [(("States", "Parallel", "Branches", 0, "States", "Pass"), {"Type": "Pass", "End": True})],
            "DUPLICATE_STATE_NAME",
            None,
        ),
        ([(("States", "x" * 81), {"Type": "Succeed"})], "INVALID_STATE_NAME", None),
    ],
)
def test_create_state_machine_refuses(edits, code, location):
    found = errors(changed(*edits))
    assert found, "accepted a definition AWS refuses"
    matching = [d for d in found if d.code == code and (location is None or d.location == location)]
    assert matching, [str(d) for d in found]


def test_no_terminal_state_is_missing_end_state_without_location():
    loop = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}}
    assert errors(loop) == [Diagnostic("MISSING_END_STATE", "Workflow has no terminal state")]


def test_invalid_definition_message_is_create_state_machine_s():
    definition = changed((("States", "Wait", "Next"), "Nope"), (("States", "Map", "TimeoutSeconds"), 5))
    with pytest.raises(InvalidDefinition) as info:
        validation.ensure_valid(definition)
    assert info.value.code == "InvalidDefinition"
    assert str(info.value) == (
        "Invalid State Machine Definition: '"
        "SCHEMA_VALIDATION_FAILED: Field 'TimeoutSeconds' is not supported at /States/Map, "
        "MISSING_TRANSITION_TARGET: Missing 'Next' target: Nope at /States/Wait/Next'"
    )


def test_required_fields_message():
    found = [str(d) for d in errors(changed((("States", "Choice", "Choices"), None)))]
    assert "SCHEMA_VALIDATION_FAILED: These fields are required: [Choices] at /States/Choice" in found


@pytest.mark.parametrize(
    "edit",
    [
        (("States", "Task", "ResultPath"), None),  # ResultPath null: discard the result
        (("States", "Task", "Parameters"), {"ids.$": "$.items[0,1]", "n.$": "States.MathAdd(1.5, 2)"}),
        (("States", "Task", "InputPath"), "$['p','t']"),
        (("QueryLanguage",), "JSONPath"),
        (("States", "Task", "Comment"), "c"),
        (("States", "Map", "Label"), "lbl"),
        (("States", "Map", "ToleratedFailurePercentage"), 10),
        (("States", "Wait", "TimestampPath"), "$$.Execution.Input.when"),
    ],
)
def test_valid_variations_are_accepted(edit):
    definition = changed(edit)
    if edit[0] == ("States", "Wait", "TimestampPath"):
        del definition["States"]["Wait"]["Seconds"]
    assert errors(definition) == []


def test_what_the_twin_does_not_run_is_not_an_aws_error():
    definition = changed((("States", "Map", "ItemReader"), {"Resource": "arn:aws:states:::s3:getObject"}))
    found = validation.check(definition)
    assert found.errors == [] and found.unsupported == ["/States/Map/ItemReader: not run by the twin"]
    jsonata = changed((("QueryLanguage",), "JSONata"))
    assert validation.check(jsonata).unsupported == ["/QueryLanguage: JSONata is not run by the twin"]
