"""The batch stack (the transform task and its least-privilege IAM) and its wiring in the serving stack:
a trigger per model in the model's operations, the notifications."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.config import load_configs
from mlops.naming import BATCH_EVENT_SOURCE, batch_upload_prefix

from ..conftest import ROOT
from .conftest import Synthesized, one, resources
from .test_iam_permissions import _granted

CONFIGS = load_configs(ROOT / "configs")


@pytest.fixture(scope="module")
def batch(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsBatch")


@pytest.fixture(scope="module")
def serving(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsServing")


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    _, machine = one(template, "AWS::StepFunctions::StateMachine")
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "X" for p in parts))  # tokens sit inside strings


def test_each_model_has_its_own_trigger_on_its_batch_prefix(batch: dict[str, Any], serving: dict[str, Any]) -> None:
    assert not resources(batch, "AWS::Events::Rule")  # the rules sit with each model's other operations
    rules = [
        r["Properties"] for r in resources(serving, "AWS::Events::Rule").values() if "EventPattern" in r["Properties"]
    ]
    prefixes = sorted(
        r["EventPattern"]["detail"]["object"]["key"][0]["prefix"]
        for r in rules
        if r["EventPattern"]["source"] == ["aws.s3"] and "object" in r["EventPattern"]["detail"]
    )
    assert prefixes == sorted(batch_upload_prefix(m) for m in CONFIGS)
    [outcome] = [r for r in rules if r["EventPattern"]["source"] == [BATCH_EVENT_SOURCE]]
    assert outcome["EventPattern"]["detail-type"] == [
        "Batch Scoring Completed",
        "Batch Scoring Refused",
        "Batch Scoring Failed",
    ]
    assert outcome["Targets"][0]["InputTransformer"]["InputPathsMap"] == {"detail-summary": "$.detail.summary"}


def test_the_transform_is_a_sync_task_fed_by_the_prepare_step(batch: dict[str, Any]) -> None:
    states = _definition(batch)["States"]
    transform = states["TransformBatch"]
    assert transform["Resource"].endswith(":states:::sagemaker:createTransformJob.sync")
    assert transform["InputPath"] == "$.plan.transform_request"
    assert [c["Next"] for c in transform["Catch"]] == ["RecordBatchFailure"]
    assert states["Score?"]["Choices"][0]["Next"] == "TransformBatch"


def test_the_transform_tasks_iam_is_scoped_to_the_apps_jobs(batch: dict[str, Any]) -> None:
    [jobs] = _granted(batch, "BatchStateMachineRole", "sagemaker:CreateTransformJob")
    assert sorted(jobs["Action"]) == sorted(
        [
            "sagemaker:CreateTransformJob",
            "sagemaker:DescribeTransformJob",
            "sagemaker:StopTransformJob",
            "sagemaker:AddTags",
            "sagemaker:ListTags",
        ]
    )
    arns = json.dumps(jobs["Resource"])
    assert all(f":transform-job/{m}-*" in arns for m in CONFIGS) and '"*"' not in arns
    [rule] = _granted(batch, "BatchStateMachineRole", "events:PutRule")
    assert "rule/StepFunctionsGetEventsForSageMakerTransformJobsRule" in json.dumps(rule["Resource"])
    # the machine passes no role (the transform runs as the model's) and creates no models
    assert not _granted(batch, "BatchStateMachineRole", "iam:PassRole")
    assert not _granted(batch, "BatchStateMachineRole", "sagemaker:CreateModel")


def test_prepare_creates_only_batch_models_and_passes_only_the_sagemaker_role(batch: dict[str, Any]) -> None:
    [create] = _granted(batch, "PrepareRole", "sagemaker:CreateModel")
    assert all(f":model/{m}-batch-v*" in json.dumps(create["Resource"]) for m in CONFIGS)
    [passed] = _granted(batch, "PrepareRole", "iam:PassRole")
    assert passed["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "SageMakerJobRole" in json.dumps(passed["Resource"])
    [reads] = _granted(batch, "PrepareRole", "s3:GetObjectVersion")
    assert all(f"/{batch_upload_prefix(m)}*" in json.dumps(reads["Resource"]) for m in CONFIGS)
    assert not _granted(batch, "FinishRole", "sagemaker:CreateModel")


def test_finish_writes_capture_only_under_the_models_batch_prefix(batch: dict[str, Any]) -> None:
    [capture] = _granted(batch, "FinishRole", "s3:PutObject")[-1:]
    text = json.dumps([s["Resource"] for s in _granted(batch, "FinishRole", "s3:PutObject")])
    assert all(f"/datacapture/{m}/batch/*" in text for m in CONFIGS) and capture
