"""MlopsTraining: model registry, SageMaker tasks, gate steps, trigger and IAM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.config import load_configs

from ..conftest import ROOT
from .conftest import Synthesized, join_definition, one, resources
from .test_validation_stack import STAR_ONLY_ACTIONS

CONFIGS = load_configs(ROOT / "configs")


@pytest.fixture(scope="module")
def training(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsTraining")


@pytest.fixture(scope="module")
def definition(training: dict[str, Any]) -> dict[str, Any]:
    _, machine = one(training, "AWS::StepFunctions::StateMachine")
    return json.loads(join_definition(machine["Properties"]["DefinitionString"]))


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (lid, st)
        for lid, policy in resources(template, "AWS::IAM::Policy").items()
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_one_model_package_group_per_config(training: dict[str, Any]) -> None:
    groups = resources(training, "AWS::SageMaker::ModelPackageGroup")
    assert sorted(g["Properties"]["ModelPackageGroupName"] for g in groups.values()) == sorted(CONFIGS)


def test_training_and_evaluation_are_sync_sagemaker_jobs_with_kms(definition: dict[str, Any]) -> None:
    train, evaluate = definition["States"]["TrainModel"], definition["States"]["EvaluateModel"]
    # the partition comes from the stack (aws, aws-cn, aws-us-gov), never written as "aws"
    assert train["Resource"] == "arn:<token>:states:::sagemaker:createTrainingJob.sync"
    assert evaluate["Resource"] == "arn:<token>:states:::sagemaker:createProcessingJob.sync"
    params = train["Parameters"]
    assert "KmsKeyId" in params["OutputDataConfig"] and "VolumeKmsKeyId" in params["ResourceConfig"]
    # the whole StoppingCondition comes from prepare: MaxWaitTimeInSeconds with managed spot training
    assert params["StoppingCondition.$"] == "$.run.resources.stopping_condition"
    assert params["EnableManagedSpotTraining.$"] == "$.run.resources.use_spot"
    assert params["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert {d["Name"] for d in params["AlgorithmSpecification"]["MetricDefinitions"]} >= {
        "validation:accuracy",
        "validation:rmse",
    }
    assert "VolumeKmsKeyId" in json.dumps(evaluate["Parameters"]["ProcessingResources"])
    for name, job in (("TrainModel", train), ("EvaluateModel", evaluate)):
        # no Retry on SageMaker.AmazonSageMakerException (it carries ValidationException too) ...
        assert [r["ErrorEquals"] for r in job["Retry"]] == [["SageMaker.ResourceLimitExceededException"]]
        # ... it is caught, and only a throttled creation goes round again
        assert [(c["ErrorEquals"], c["Next"]) for c in job["Catch"]] == [
            (["SageMaker.AmazonSageMakerException"], f"{name}Throttled?"),
            (["States.ALL"], "RecordFailure"),
        ]


def test_sagemaker_jobs_retry_only_throttled_creations(definition: dict[str, Any]) -> None:
    states = definition["States"]
    for name in ("TrainModel", "EvaluateModel"):
        choice = states[f"{name}Throttled?"]
        (rule,) = choice["Choices"]
        assert rule["And"] == [
            {"Variable": "$.error.Cause", "StringMatches": "*Error Code: ThrottlingException*"},
            {"Variable": f"$.retries.{name}.count", "NumericLessThan": 5},
        ]
        assert rule["Next"] == f"{name}Backoff" and choice["Default"] == "RecordFailure"
        assert states[f"{name}Backoff"]["SecondsPath"] == f"$.retries.{name}.wait"
        assert states[f"{name}Backoff"]["Next"] == f"Count{name}Retry"
        assert states[f"Count{name}Retry"]["Next"] == name
    assert states["StartRetryCounters"]["Next"] == "TrainModel"


def test_flow_gate_register_and_one_training_per_model(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert definition["StartAt"] == "PrepareTraining"
    routes = {c["StringEquals"]: c["Next"] for c in states["TrainingNeeded?"]["Choices"]}
    assert routes == {
        "ready": "StartRetryCounters",
        "queued": "TrainingQueued",
        "no_new_data": "NotifyRetrainNotNeeded",
    }
    assert states["TrainingNeeded?"]["Default"] == "TrainingSkipped"
    assert states["NotifyRetrainNotNeeded"]["Next"] == "RetrainNotNeeded"
    assert states["TrainModel"]["Next"] == "EvaluateModel"
    assert states["EvaluateModel"]["Next"] == "ApplyGate"
    assert states["ApplyGate"]["Next"] == "RegisterModel"
    assert states["RecordFailure"]["Next"] == "TrainingFailed"
    assert states["TrainingFailed"]["Type"] == "Fail"
    assert {c["Next"] for c in states["GatePassed?"]["Choices"]} == {"ModelRegistered"}
    assert states["GatePassed?"]["Default"] == "CandidateRejected"


def test_record_failure_reads_the_whole_state_not_run(definition: dict[str, Any]) -> None:
    """Issue 8.8: "$.run" does not exist when PrepareTraining itself failed."""
    payload = definition["States"]["RecordFailure"]["Parameters"]
    assert payload["state.$"] == "$" and "run.$" not in payload
    assert payload["execution_id.$"] == "$$.Execution.Id" and payload["state_machine_arn.$"] == "$$.StateMachine.Id"
    assert definition["States"]["PrepareTraining"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
    ]


def test_started_by_dataset_validated_events(training: dict[str, Any]) -> None:
    rules = resources(training, "AWS::Events::Rule")
    (rule,) = [r for lid, r in rules.items() if lid.startswith("OnDatasetValidated")]
    assert rule["Properties"]["EventPattern"] == {"source": ["mlops.validation"], "detail-type": ["Dataset Validated"]}
    (target,) = rule["Properties"]["Targets"]
    assert target["InputPath"] == "$.detail"


def test_executions_that_end_unfinished_are_reaped(training: dict[str, Any]) -> None:
    rules = resources(training, "AWS::Events::Rule")
    (rule,) = [r for lid, r in rules.items() if lid.startswith("OnTrainingExecutionEnded")]
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert pattern["detail"]["status"] == ["FAILED", "TIMED_OUT", "ABORTED"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": one(training, "AWS::StepFunctions::StateMachine")[0]}]
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("ReapFn")


def test_lock_holders_check_and_start_only_training_executions(training: dict[str, Any]) -> None:
    machine = one(training, "AWS::StepFunctions::StateMachine")[0]
    policies = resources(training, "AWS::IAM::Policy")
    (policy_id,) = [lid for lid in policies if lid.startswith("TrainingExecutions")]
    statements = {st["Sid"]: st for st in policies[policy_id]["Properties"]["PolicyDocument"]["Statement"]}
    assert statements["LockOwnerAlive"]["Action"] == "states:DescribeExecution"
    _, parts = statements["LockOwnerAlive"]["Resource"]["Fn::Join"]
    assert parts[-3:] == [":execution:", {"Fn::GetAtt": [machine, "Name"]}, ":*"]  # this machine's executions
    assert statements["FollowUpRun"] == {
        "Sid": "FollowUpRun",
        "Action": "states:StartExecution",
        "Effect": "Allow",
        "Resource": {"Ref": machine},
    }
    roles = {r["Ref"] for r in policies[policy_id]["Properties"]["Roles"]}
    assert {r.split("Role")[0] for r in roles} == {"Prepare", "Finish", "Reap"}
    for lid, st in _statements(training):
        if "states:" in json.dumps(st["Action"]) and lid != policy_id:
            assert lid.startswith("TrainingStateMachine"), f"{lid} may use Step Functions: {st['Action']}"


def test_prepare_has_room_for_the_largest_allowed_dataset(training: dict[str, Any]) -> None:
    """Issue 8.13: /tmp holds the dataset once (the split streams to S3), sized from max_bytes."""
    fns = resources(training, "AWS::Lambda::Function")
    (prepare,) = [f for lid, f in fns.items() if lid.startswith("PrepareFn")]
    largest = max(c.dataset.max_bytes for c in CONFIGS.values())
    assert prepare["Properties"]["EphemeralStorage"]["Size"] * 2**20 >= largest + 512 * 2**20


def test_pass_role_only_the_job_role_to_sagemaker(training: dict[str, Any]) -> None:
    passes = [st for _, st in _statements(training) if "iam:PassRole" in json.dumps(st["Action"])]
    assert passes, "the state machine passes the job role"
    for st in passes:
        assert st["Resource"] == {"Fn::GetAtt": [next(iter(st["Resource"]["Fn::GetAtt"])), "Arn"]}
        assert st["Resource"]["Fn::GetAtt"][0].startswith("SageMakerJobRole")
        assert st["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_no_star_resources_beyond_actions_without_resource_scope(training: dict[str, Any]) -> None:
    allowed = STAR_ONLY_ACTIONS | {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    for lid, st in _statements(training):
        if st["Resource"] == "*":
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert set(actions) <= allowed, f"{lid}: {actions} on *"
        text = json.dumps(st)
        assert "s3:*" not in text and "sagemaker:*" not in text and "kms:*" not in text, lid


def test_jobs_and_registry_scoped_to_the_app_models(training: dict[str, Any]) -> None:
    text = json.dumps([st for _, st in _statements(training)])
    for name in CONFIGS:
        assert f":training-job/{name}-*" in text and f":model-package-group/{name}" in text
    assert ":training-job/*" not in text and ":model-package/*" not in text


def test_log_groups_are_kms_encrypted(training: dict[str, Any]) -> None:
    for lid, group in resources(training, "AWS::Logs::LogGroup").items():
        assert "KmsKeyId" in group["Properties"], lid
