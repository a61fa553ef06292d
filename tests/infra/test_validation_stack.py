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


def _function(template: dict[str, Any], prefix: str) -> dict[str, Any]:
    return dict(template["Resources"][logical_id(template, "AWS::Lambda::Function", prefix)])


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


def test_record_error_function_is_small_with_its_own_role(validation: dict[str, Any]) -> None:
    assert sorted(resources(validation, "AWS::Lambda::Function")) == [
        logical_id(validation, "AWS::Lambda::Function", "RecordValidationErrorFn"),
        logical_id(validation, "AWS::Lambda::Function", "ValidateFn"),
    ]
    props = _function(validation, "RecordValidationErrorFn")["Properties"]
    assert props["Handler"] == "handler.record_error"
    assert props["MemorySize"] == 512 and props["Timeout"] == 300
    assert props["Code"] == _function(validation, "ValidateFn")["Properties"]["Code"]  # the same code asset
    assert props["Role"]["Fn::GetAtt"][0].startswith("RecordValidationErrorRole")


@pytest.mark.parametrize("prefix", ["ValidateFn", "RecordValidationErrorFn"])
def test_function_environment(validation: dict[str, Any], prefix: str) -> None:
    env = _function(validation, prefix)["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "mlops-validation"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Mlops"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    for role in ("Incoming", "Validated", "Artifacts", "Quarantine"):
        assert f"Ref{role}Bucket" in env[f"{role.upper()}_BUCKET"]["Fn::ImportValue"], role


@pytest.mark.parametrize("prefix", ["ValidateFn", "RecordValidationErrorFn"])
def test_function_has_the_two_layers(validation: dict[str, Any], prefix: str) -> None:
    fn = _function(validation, prefix)
    layers = resources(validation, "AWS::Lambda::LayerVersion")
    expected = [logical_id(validation, "AWS::Lambda::LayerVersion", p) for p in ("LayersDeps", "LayersCore")]
    assert sorted(layer["Ref"] for layer in fn["Properties"]["Layers"]) == sorted(expected)
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.14"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]


@pytest.mark.parametrize("prefix", ["ValidateRole", "RecordValidationErrorRole"])
def test_function_role_has_no_managed_policies(validation: dict[str, Any], prefix: str) -> None:
    role = validation["Resources"][logical_id(validation, "AWS::IAM::Role", prefix)]
    assert "ManagedPolicyArns" not in role["Properties"]


def test_log_groups_are_encrypted_with_retention(validation: dict[str, Any]) -> None:
    groups = resources(validation, "AWS::Logs::LogGroup")
    assert len(groups) == 3
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
                "IncludeExecutionData": False,  # no event payloads in logs by default
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
        "RecordValidationError": "Task",
        "ErrorNotRecorded": "Pass",
        "CommitCheckErrored": "Pass",
        "PublishValidationErrored": "Task",
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
        "execution_started.$": "$$.Execution.StartTime",
    }
    service, crash, timeout = task["Retry"]
    assert set(service["ErrorEquals"]) == {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.TooManyRequestsException",
    }
    assert service["BackoffRate"] == 2 and service["MaxAttempts"] == 6 and service["IntervalSeconds"] == 2
    # a crashed worker is retried twice, a timeout or out-of-memory once: validation is idempotent
    assert crash == {
        "ErrorEquals": ["Lambda.Unknown", "Runtime.ExitError"],
        "IntervalSeconds": 5,
        "MaxAttempts": 2,
        "BackoffRate": 3,
    }
    assert timeout == {
        "ErrorEquals": ["Sandbox.Timedout", "States.Timeout", "Runtime.OutOfMemory"],
        "IntervalSeconds": 10,
        "MaxAttempts": 1,
    }
    assert task["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordValidationError"}]


def test_a_validation_that_cannot_complete_is_recorded_notified_and_fails(
    validation: dict[str, Any], definition: dict[str, Any]
) -> None:
    states = definition["States"]
    record = states["RecordValidationError"]
    assert record["Resource"] == "arn:<token>:states:::lambda:invoke"
    fn = logical_id(validation, "AWS::Lambda::Function", "RecordValidationErrorFn")
    _, machine = one(validation, "AWS::StepFunctions::StateMachine")
    assert {"Fn::GetAtt": [fn, "Arn"]} in machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    payload = record["Parameters"]["Payload"]
    assert payload["key.$"] == "$.detail.object.key" and payload["version_id.$"] == "$.detail.object.version-id"
    assert payload["error.$"] == "$.error.Error" and payload["cause.$"] == "$.error.Cause"
    assert payload["execution_started.$"] == "$$.Execution.StartTime"  # the same dataset version on every retry
    assert record["ResultSelector"] == {"result.$": "$.Payload"} and record["ResultPath"] == "$.recorded"
    assert [r["ErrorEquals"] for r in record["Retry"]][1] == [
        "Lambda.Unknown",
        "Runtime.ExitError",
        "Sandbox.Timedout",
        "States.Timeout",
        "Runtime.OutOfMemory",
    ]
    assert record["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "ErrorNotRecorded"}
    ]
    assert record["Next"] == "PublishValidationErrored"
    # if recording failed too, the event still goes out with what is known of the object
    not_recorded = states["ErrorNotRecorded"]
    assert not_recorded["ResultPath"] == "$.recorded" and not_recorded["Next"] == "PublishValidationErrored"
    assert not_recorded["Parameters"]["result"]["source_key.$"] == "$.detail.object.key"
    publish = states["PublishValidationErrored"]
    assert publish["Resource"] == "arn:<token>:states:::events:putEvents"
    assert publish["Parameters"]["Entries"] == [
        {"Detail.$": "$.recorded.result", "DetailType": "Dataset Validation Errored", "Source": "mlops.validation"}
    ]
    assert publish["ResultPath"] is None and publish["Next"] == "ValidationErrored"
    assert publish["Catch"][0]["Next"] == "ValidationErrored"  # a failed publish still ends with the cause


def test_record_error_role_is_least_privilege(validation: dict[str, Any]) -> None:
    role = logical_id(validation, "AWS::IAM::Role", "RecordValidationErrorRole")
    granted: dict[str, set[str]] = {}
    for statement in _statements(validation):
        policy = validation["Resources"][statement["_policy"]]["Properties"]
        if {"Ref": role} not in policy["Roles"]:
            continue
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, set()).update(flatten(r) for r in _as_list(statement["Resource"]))
    s3 = {
        a: sorted(r.split("/", 1)[1] if "/" in r else "<bucket>" for r in rs)
        for a, rs in granted.items()
        if a.startswith("s3:")
    }
    assert s3 == {
        "s3:GetObject": ["fates/*", "incoming/*", "locks/validation/*"],
        "s3:GetObjectVersion": ["incoming/*"],
        "s3:DeleteObject": ["incoming/*"],
        "s3:PutObject": ["fates/*", "locks/validation/*", "quarantine/*", "reports/*"],
        "s3:AbortMultipartUpload": ["fates/*", "locks/validation/*", "quarantine/*", "reports/*"],
        "s3:ListBucket": ["<bucket>", "<bucket>"],
    }
    assert not any("Validated" in r for rs in granted.values() for r in rs)  # nothing on the validated bucket


def test_validate_role_records_fates(validation: dict[str, Any]) -> None:
    role = logical_id(validation, "AWS::IAM::Role", "ValidateRole")
    fates = {
        action
        for statement in _statements(validation)
        if {"Ref": role} in validation["Resources"][statement["_policy"]]["Properties"]["Roles"]
        for action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
        if flatten(resource).endswith("/fates/*")
    }
    assert {"s3:GetObject", "s3:PutObject"} <= fates and "s3:DeleteObject" not in fates


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
    assert check["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CommitCheckErrored"}]
    # no object to record (the parts stay in place): told, then failed with the cause
    errored = states["CommitCheckErrored"]
    assert errored["ResultPath"] == "$.recorded" and errored["Next"] == "PublishValidationErrored"
    assert errored["Parameters"]["result"]["dataset_prefix.$"] == "$.dataset_prefix"
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
    assert len(deletes) == 2  # the validate and the record-error roles: a quarantined upload leaves incoming
    for delete in deletes:
        [resource] = _as_list(delete["Resource"])
        assert flatten(resource).startswith("MlopsData:ExportsOutputFnGetAttIncomingBucket")
        assert flatten(resource).endswith("/incoming/*")
    assert not any("s3:DeleteObjectVersion" in _as_list(s["Action"]) for s in _statements(validation))


def test_kms_use_is_scoped_to_the_data_key(validation: dict[str, Any]) -> None:
    for statement in _statements(validation):
        if any(a.startswith("kms:") for a in _as_list(statement["Action"])):
            assert "DataKey" in flatten(statement["Resource"]), statement
