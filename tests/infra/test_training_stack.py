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
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    assert evaluate["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
    params = train["Parameters"]
    assert "KmsKeyId" in params["OutputDataConfig"] and "VolumeKmsKeyId" in params["ResourceConfig"]
    assert (
        "MaxRuntimeInSeconds.$" in params["StoppingCondition"] or "MaxRuntimeInSeconds" in params["StoppingCondition"]
    )
    assert params["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert {d["Name"] for d in params["AlgorithmSpecification"]["MetricDefinitions"]} >= {
        "validation:accuracy",
        "validation:rmse",
    }
    assert "VolumeKmsKeyId" in json.dumps(evaluate["Parameters"]["ProcessingResources"])
    for job in (train, evaluate):
        assert any("ThrottlingException" in r["ErrorEquals"] for r in job["Retry"])
        assert job["Catch"][0]["Next"] == "RecordFailure"


def test_flow_gate_register_and_one_training_per_model(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert definition["StartAt"] == "PrepareTraining"
    assert states["TrainingNeeded?"]["Choices"][0]["Next"] == "TrainingSkipped"
    assert states["TrainModel"]["Next"] == "EvaluateModel"
    assert states["EvaluateModel"]["Next"] == "ApplyGate"
    assert states["ApplyGate"]["Next"] == "RegisterModel"
    assert states["RecordFailure"]["Next"] == "TrainingFailed"
    assert states["TrainingFailed"]["Type"] == "Fail"
    assert {c["Next"] for c in states["GatePassed?"]["Choices"]} == {"ModelRegistered"}
    assert states["GatePassed?"]["Default"] == "CandidateRejected"


def test_started_by_dataset_validated_events(training: dict[str, Any]) -> None:
    (rule,) = resources(training, "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"] == {"source": ["mlops.validation"], "detail-type": ["Dataset Validated"]}
    (target,) = rule["Properties"]["Targets"]
    assert target["InputPath"] == "$.detail"


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
