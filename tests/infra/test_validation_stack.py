"""MlopsValidation: the Lambda, its layers, the state machine, the rule and the IAM."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from stacks.nag import flatten

from .conftest import Synthesized, join_definition, logical_id, one, resources

# Statements that AWS only accepts on "*": X-Ray and Step Functions' log delivery setup.
STAR_ONLY_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}
APP_BUCKETS = ("IncomingBucket", "ValidatedBucket", "ArtifactsBucket", "QuarantineBucket")


@pytest.fixture(scope="module")
def validation(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsValidation")


@pytest.fixture(scope="module")
def definition(validation: dict[str, Any]) -> dict[str, Any]:
    _, machine = one(validation, "AWS::StepFunctions::StateMachine")
    return json.loads(join_definition(machine["Properties"]["DefinitionString"]))


def _statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**s, "_policy": lid}
        for lid, policy in resources(template, "AWS::IAM::Policy").items()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_function_runtime_handler_and_sizing(synthesized: Synthesized) -> None:
    synthesized.template("MlopsValidation").has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.14",
            "Architectures": ["x86_64"],
            "Handler": "handler.handler",
            "MemorySize": 3008,
            "EphemeralStorage": {"Size": 10240},
            "Timeout": 900,
            "TracingConfig": {"Mode": "Active"},
            "LoggingConfig": {"LogGroup": {"Ref": Match.string_like_regexp("^ValidateLogs")}},
        },
    )


def test_function_environment(validation: dict[str, Any]) -> None:
    _, fn = one(validation, "AWS::Lambda::Function")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "mlops-validation"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Mlops"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    for role in ("Incoming", "Validated", "Artifacts", "Quarantine"):
        assert f"Ref{role}Bucket" in env[f"{role.upper()}_BUCKET"]["Fn::ImportValue"], role


def test_function_has_the_two_layers(validation: dict[str, Any]) -> None:
    _, fn = one(validation, "AWS::Lambda::Function")
    layers = resources(validation, "AWS::Lambda::LayerVersion")
    expected = [logical_id(validation, "AWS::Lambda::LayerVersion", p) for p in ("LayersDeps", "LayersCore")]
    assert sorted(layer["Ref"] for layer in fn["Properties"]["Layers"]) == sorted(expected)
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.14"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]


def test_function_role_has_no_managed_policies(validation: dict[str, Any]) -> None:
    role = validation["Resources"][logical_id(validation, "AWS::IAM::Role", "ValidateRole")]
    assert "ManagedPolicyArns" not in role["Properties"]


def test_log_groups_are_encrypted_with_retention(validation: dict[str, Any]) -> None:
    groups = resources(validation, "AWS::Logs::LogGroup")
    assert len(groups) == 2
    for lid, group in groups.items():
        assert "DataKey" in group["Properties"]["KmsKeyId"]["Fn::ImportValue"], lid
        assert group["Properties"]["RetentionInDays"] == 90, lid


def test_state_machine_settings(synthesized: Synthesized) -> None:
    synthesized.template("MlopsValidation").has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": True,
                "Destinations": [Match.any_value()],
            },
        },
    )


def test_definition_states(definition: dict[str, Any]) -> None:
    assert definition["StartAt"] == "ValidateDataset"
    types = {name: state["Type"] for name, state in definition["States"].items()}
    assert types == {
        "ValidateDataset": "Task",
        "DatasetPassed?": "Choice",
        "AlreadyValidated": "Succeed",
        "PublishDatasetValidated": "Task",
        "ValidationPassed": "Succeed",
        "ValidationFailed": "Fail",
        "ValidationErrored": "Fail",
        "WatchThisFolder?": "Choice",
        "WaitForCommitMarker": "Wait",
        "CheckCommit": "Task",
        "CommitArrived?": "Choice",
        "DatasetCommitted": "Succeed",
        "DatasetIncomplete": "Fail",
        "AwaitingCommitMarker": "Succeed",
        "NotADataFile": "Succeed",
    }


def test_validate_task_payload_retry_and_catch(definition: dict[str, Any]) -> None:
    task = definition["States"]["ValidateDataset"]
    assert task["Resource"] == "arn:<token>:states:::lambda:invoke"
    assert task["OutputPath"] == "$.Payload"
    assert task["Next"] == "DatasetPassed?"
    payload = task["Parameters"]["Payload"]
    assert payload == {
        "bucket.$": "$.detail.bucket.name",
        "key.$": "$.detail.object.key",
        "version_id.$": "$.detail.object.version-id",
        "etag.$": "$.detail.object.etag",
        "size.$": "$.detail.object.size",
        "event_id.$": "$.id",
        "execution_id.$": "$$.Execution.Id",
    }
    [retry] = task["Retry"]
    assert set(retry["ErrorEquals"]) == {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    }
    assert retry["BackoffRate"] == 2 and retry["MaxAttempts"] == 6 and retry["IntervalSeconds"] == 2
    assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ValidationErrored"}]


def test_choice_routes_duplicates_then_status(definition: dict[str, Any]) -> None:
    choice = definition["States"]["DatasetPassed?"]
    assert choice["Choices"] == [
        {"Variable": "$.duplicate", "BooleanEquals": True, "Next": "AlreadyValidated"},
        {"Variable": "$.status", "StringEquals": "passed", "Next": "PublishDatasetValidated"},
        {"Variable": "$.status", "StringEquals": "waiting", "Next": "WatchThisFolder?"},
        {"Variable": "$.status", "StringEquals": "ignored", "Next": "NotADataFile"},
    ]
    assert choice["Default"] == "ValidationFailed"


def test_part_files_wait_for_the_commit_marker_then_check_it(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["WatchThisFolder?"]["Choices"] == [
        {"Variable": "$.watch", "BooleanEquals": True, "Next": "WaitForCommitMarker"}
    ]
    assert states["WatchThisFolder?"]["Default"] == "AwaitingCommitMarker"
    assert states["WaitForCommitMarker"] == {"Type": "Wait", "SecondsPath": "$.wait_seconds", "Next": "CheckCommit"}
    check = states["CheckCommit"]
    assert check["Parameters"]["Payload"] == {
        "action": "check_commit",
        "bucket.$": "$.bucket",
        "dataset_prefix.$": "$.dataset_prefix",
        "model.$": "$.model",
    }
    assert check["Catch"][0]["Next"] == "ValidationErrored"
    assert states["CommitArrived?"]["Choices"] == [
        {"Variable": "$.status", "StringEquals": "committed", "Next": "DatasetCommitted"}
    ]
    assert states["DatasetIncomplete"] == {"Type": "Fail", "Error": "DatasetIncomplete", "CausePath": "$.summary"}


def test_publish_sends_the_handler_output(definition: dict[str, Any]) -> None:
    publish = definition["States"]["PublishDatasetValidated"]
    assert publish["Resource"] == "arn:<token>:states:::events:putEvents"
    assert publish["Parameters"]["Entries"] == [
        {"Detail.$": "$", "DetailType": "Dataset Validated", "Source": "mlops.validation"}
    ]
    assert publish["ResultPath"] is None
    assert publish["Next"] == "ValidationPassed"


def test_fail_states_carry_error_and_cause(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert states["ValidationFailed"] == {"Type": "Fail", "Error": "DatasetRejected", "CausePath": "$.summary"}
    assert states["ValidationErrored"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_rule_event_pattern(validation: dict[str, Any]) -> None:
    _, rule = one(validation, "AWS::Events::Rule")
    pattern = rule["Properties"]["EventPattern"]
    bucket_name = pattern["detail"]["bucket"]["name"]
    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": bucket_name}, "object": {"key": [{"prefix": "incoming/"}]}},
    }
    assert bucket_name == [{"Fn::ImportValue": bucket_name[0]["Fn::ImportValue"]}]
    assert "RefIncomingBucket" in bucket_name[0]["Fn::ImportValue"]
    assert rule["Properties"]["State"] == "ENABLED"


def test_rule_target_role_retry_and_dead_letter_queue(validation: dict[str, Any]) -> None:
    _, rule = one(validation, "AWS::Events::Rule")
    [target] = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": logical_id(validation, "AWS::StepFunctions::StateMachine", "ValidationMachine")}
    assert target["RoleArn"] == {"Fn::GetAtt": [logical_id(validation, "AWS::IAM::Role", "TriggerRole"), "Arn"]}
    queue_id, queue = one(validation, "AWS::SQS::Queue")
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 86400}
    assert "DataKey" in queue["Properties"]["KmsMasterKeyId"]["Fn::ImportValue"]
    _, queue_policy = one(validation, "AWS::SQS::QueuePolicy")
    statements = queue_policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    assert any(s["Effect"] == "Allow" and s["Principal"] == {"Service": "events.amazonaws.com"} for s in statements)


def test_only_star_only_actions_have_star_resources(validation: dict[str, Any]) -> None:
    for statement in _statements(validation):
        if "*" in _as_list(statement["Resource"]):
            assert set(_as_list(statement["Action"])) <= STAR_ONLY_ACTIONS, statement


def test_s3_statements_are_scoped_to_the_app_buckets(validation: dict[str, Any]) -> None:
    s3_statements = [s for s in _statements(validation) if any(a.startswith("s3:") for a in _as_list(s["Action"]))]
    assert s3_statements
    for statement in s3_statements:
        assert all(a.startswith("s3:") and "*" not in a for a in _as_list(statement["Action"])), statement
        for resource in _as_list(statement["Resource"]):
            arn = flatten(resource)
            assert any(arn.startswith(f"MlopsData:ExportsOutputFnGetAtt{b}") for b in APP_BUCKETS), arn


def test_uploads_are_the_only_deletable_objects(validation: dict[str, Any]) -> None:
    deletes = [s for s in _statements(validation) if "s3:DeleteObject" in _as_list(s["Action"])]
    [delete] = deletes
    [resource] = _as_list(delete["Resource"])
    assert flatten(resource).startswith("MlopsData:ExportsOutputFnGetAttIncomingBucket")
    assert flatten(resource).endswith("/incoming/*")
    assert not any("s3:DeleteObjectVersion" in _as_list(s["Action"]) for s in _statements(validation))


def test_kms_use_is_scoped_to_the_data_key(validation: dict[str, Any]) -> None:
    for statement in _statements(validation):
        if any(a.startswith("kms:") for a in _as_list(statement["Action"])):
            assert "DataKey" in flatten(statement["Resource"]), statement
