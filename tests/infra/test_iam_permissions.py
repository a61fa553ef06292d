"""The permissions strict IAM on the twin asked for, each scoped to the app's own resources.

tests/e2e/test_iam_on_twin.py shows each one is needed (the state that uses it fails with
AccessDenied without it); these pin where it is granted and how narrowly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.config import load_configs
from mlops.naming import ROLLBACK_ALARM_KINDS, alarm_name

from ..conftest import ROOT
from .conftest import Synthesized, resources

CONFIGS = load_configs(ROOT / "configs")


def _granted(template: dict[str, Any], role_prefix: str, action: str) -> list[dict[str, Any]]:
    """Statements of the policies attached to the role ``role_prefix*`` that allow ``action``."""
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = json.dumps(policy["Properties"]["Roles"])
        if f'"{role_prefix}' not in roles:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if statement["Effect"] == "Allow" and action in actions:
                found.append(statement)
    return found


@pytest.fixture(scope="module")
def training(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsTraining")


@pytest.fixture(scope="module")
def serving(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsServing")


def test_training_machine_reads_the_tags_of_its_own_jobs(training: dict[str, Any]) -> None:
    (statement,) = _granted(training, "TrainingStateMachineRole", "sagemaker:ListTags")
    text = json.dumps(statement["Resource"])
    assert statement["Resource"] != "*"
    for model in CONFIGS:
        assert f"training-job/{model}-*" in text and f"processing-job/{model}-*" in text


def test_prepare_may_delete_only_training_locks_and_dataset_fates(training: dict[str, Any]) -> None:
    statements = _granted(training, "PrepareRole", "s3:DeleteObject")
    ends = sorted(json.dumps(s["Resource"]).rsplit('"', 2)[-2] for s in statements)
    assert ends == ["/fates/*", "/locks/training/*"], ends


def test_jobs_list_the_code_asset_keys_only(training: dict[str, Any]) -> None:
    listing = [s for s in _granted(training, "SageMakerJobRole", "s3:ListBucket") if "Condition" in s]
    (statement,) = listing
    prefixes = statement["Condition"]["StringEquals"]["s3:prefix"]
    # the platform's source dir and one per model with its own code (training.code)
    assert len(prefixes) == 1 + sum(1 for c in CONFIGS.values() if c.training.code)
    assert all(p.endswith((".zip", ".tar.gz")) for p in prefixes) and "assets" in json.dumps(statement["Resource"])
    (read,) = _granted(training, "SageMakerJobRole", "s3:GetObject")[-1:]
    assert all(p in json.dumps(read["Resource"]) for p in prefixes)


def test_deploy_machine_may_grant_on_the_data_key_for_sagemaker_only(serving: dict[str, Any]) -> None:
    (grant,) = _granted(serving, "DeployStateMachineRole", "kms:CreateGrant")
    assert grant["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert "DataKey" in json.dumps(grant["Resource"]) and grant["Resource"] != "*"
    (describe,) = _granted(serving, "DeployStateMachineRole", "kms:DescribeKey")
    assert describe["Resource"] == grant["Resource"]


def test_deploy_machine_reads_exactly_the_rollback_alarms(serving: dict[str, Any]) -> None:
    (statement,) = _granted(serving, "DeployStateMachineRole", "cloudwatch:DescribeAlarms")
    text = json.dumps(statement["Resource"])
    expected = {alarm_name(m, k) for m in CONFIGS for k in ROLLBACK_ALARM_KINDS}
    assert all(f":alarm:{name}" in text for name in expected) and len(statement["Resource"]) == len(expected)


def test_record_has_what_application_auto_scaling_validates(serving: dict[str, Any]) -> None:
    for action in ("sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig"):
        assert _granted(serving, "RecordRole", action), action
    (weights,) = _granted(serving, "RecordRole", "sagemaker:UpdateEndpointWeightsAndCapacities")
    assert all(f":endpoint/{m}" in json.dumps(weights["Resource"]) for m in CONFIGS)
    for action in ("cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms", "cloudwatch:DeleteAlarms"):
        (statement,) = _granted(serving, "RecordRole", action)
        text = json.dumps(statement["Resource"])
        assert all(f":alarm:TargetTracking-endpoint/{m}/variant/*" in text for m in CONFIGS), text
