"""MlopsServing: deployment machine and trigger, alarms from the configs, retraining rules, IAM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.config import load_configs
from mlops.naming import alarm_name

from ..conftest import ROOT
from .conftest import Synthesized, join_definition, one, resources
from .test_training_stack import _statements
from .test_validation_stack import STAR_ONLY_ACTIONS

CONFIGS = load_configs(ROOT / "configs")
# models whose requests are captured: they have drift (and quality) monitoring; serverless ones do not
MONITORED = sorted(name for name, c in CONFIGS.items() if c.endpoint.data_capture_percent > 0)


@pytest.fixture(scope="module")
def serving(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.template_json("MlopsServing")


@pytest.fixture(scope="module")
def definition(serving: dict[str, Any]) -> dict[str, Any]:
    _, machine = one(serving, "AWS::StepFunctions::StateMachine")
    return json.loads(join_definition(machine["Properties"]["DefinitionString"]))


def _rules(serving: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources(serving, "AWS::Events::Rule").values()]


def test_deploys_on_approval_of_the_app_models(serving: dict[str, Any]) -> None:
    (approved,) = [r for r in _rules(serving) if "Approved" in json.dumps(r.get("EventPattern"))]
    pattern = approved["EventPattern"]
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert sorted(pattern["detail"]["ModelPackageGroupName"]) == sorted(CONFIGS)


def test_deploy_machine_creates_or_updates_and_reports_rollback(definition: dict[str, Any]) -> None:
    states = definition["States"]
    # the partition comes from the stack (aws, aws-cn, aws-us-gov), never written as "aws"
    assert states["CreateModel"]["Resource"] == "arn:<token>:states:::sagemaker:createModel"
    assert states["UpdateEndpoint"]["Resource"] == "arn:<token>:states:::sagemaker:updateEndpoint"
    assert states["DeploymentRolledBack"]["Type"] == "Fail"
    assert states["NotifyFailure"]["Resource"].endswith(":states:::sns:publish")
    assert states["StartRetryCounters"]["Next"] == "CreateModel"
    for name in ("CreateModel", "CreateEndpointConfig", "CreateEndpoint", "UpdateEndpoint"):
        # no Retry on SageMaker.AmazonSageMakerException (it carries ValidationException too): caught,
        # and only a throttled call goes round again; anything else is notified at once
        assert "Retry" not in states[name]
        assert [(c["ErrorEquals"], c["Next"]) for c in states[name]["Catch"]] == [
            (["SageMaker.AmazonSageMakerException"], f"{name}Throttled?"),
            (["States.ALL"], "NotifyFailure"),
        ]
        choice = states[f"{name}Throttled?"]
        assert choice["Choices"][0]["And"][0] == {
            "Variable": "$.error.Cause",
            "StringMatches": "*Error Code: ThrottlingException*",
        }
        assert choice["Default"] == "NotifyFailure" and states[f"Count{name}Retry"]["Next"] == name


@pytest.mark.parametrize("model", MONITORED)
def test_alarms_take_their_thresholds_from_the_config(serving: dict[str, Any], model: str) -> None:
    alarms = {
        a["Properties"]["AlarmName"]: a["Properties"] for a in resources(serving, "AWS::CloudWatch::Alarm").values()
    }
    config = CONFIGS[model]
    drift = alarms[alarm_name(model, "drift")]
    settings = config.monitoring.alarms
    assert drift["Threshold"] == settings.drifted_feature_share
    assert drift["EvaluationPeriods"] == settings.evaluation_periods
    assert drift["DatapointsToAlarm"] == settings.datapoints_to_alarm
    assert drift["TreatMissingData"] == "notBreaching"
    assert alarms[alarm_name(model, "5xx")]["Threshold"] == settings.error_5xx_rate
    assert {alarm_name(model, k) for k in ("5xx", "latency", "drift", "quality")} <= set(alarms)


@pytest.mark.parametrize("model", MONITORED)
def test_drift_and_quality_alarms_start_retraining(serving: dict[str, Any], model: str) -> None:
    (retrain,) = [r for r in _rules(serving) if alarm_name(model, "drift") in json.dumps(r.get("EventPattern"))]
    pattern = retrain["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"] and pattern["detail"]["state"] == {"value": ["ALARM"]}
    assert sorted(pattern["detail"]["alarmName"]) == sorted([alarm_name(model, "drift"), alarm_name(model, "quality")])
    assert "TrainingStateMachine" in json.dumps(retrain["Targets"])


def test_a_monitor_schedule_per_monitored_model_and_a_dashboard_per_model(serving: dict[str, Any]) -> None:
    schedules = [r for r in _rules(serving) if "ScheduleExpression" in r]
    assert sorted(json.loads(r["Targets"][0]["Input"])["model"] for r in schedules) == MONITORED
    assert len(resources(serving, "AWS::CloudWatch::Dashboard")) == len(CONFIGS)


@pytest.mark.parametrize("model", sorted(set(CONFIGS) - set(MONITORED)))
def test_a_model_without_capture_has_endpoint_alarms_only(serving: dict[str, Any], model: str) -> None:
    names = {a["Properties"]["AlarmName"] for a in resources(serving, "AWS::CloudWatch::Alarm").values()}
    assert {alarm_name(model, "5xx"), alarm_name(model, "latency")} <= names
    assert not {alarm_name(model, "drift"), alarm_name(model, "quality")} & names
    mine = [alarm_name(model, k) for k in ("5xx", "latency", "drift", "quality")]  # no retrain rule on them
    assert not [r for r in _rules(serving) if any(n in json.dumps(r.get("EventPattern", {})) for n in mine)]


def test_a_validation_that_could_not_complete_is_notified(serving: dict[str, Any]) -> None:
    (rule,) = [r for r in _rules(serving) if "Dataset Validation Errored" in json.dumps(r.get("EventPattern"))]
    assert rule["EventPattern"] == {"source": ["mlops.validation"], "detail-type": ["Dataset Validation Errored"]}
    topic_id, _ = one(serving, "AWS::SNS::Topic")
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    assert target["InputTransformer"]["InputPathsMap"] == {"detail-summary": "$.detail.summary"}
    assert target["InputTransformer"]["InputTemplate"] == '"<detail-summary>"'


def test_topic_is_kms_encrypted(serving: dict[str, Any]) -> None:
    _, topic = one(serving, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic["Properties"]


def test_sagemaker_permissions_are_scoped_to_the_app_models(serving: dict[str, Any]) -> None:
    statements = _statements(serving)
    text = json.dumps([st for _, st in statements])
    for name in CONFIGS:
        assert f":endpoint/{name}" in text and f":model/{name}-*" in text
    assert ":endpoint/*" not in text and ":model/*" not in text
    for lid, st in statements:
        if st["Resource"] == "*":
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert set(actions) <= STAR_ONLY_ACTIONS, f"{lid}: {actions} on *"


def test_model_alarms_watch_the_dimensions_the_monitor_publishes(serving: dict[str, Any]) -> None:
    # Powertools Metrics publishes with the dimensions model + service; CloudWatch matches the exact set
    monitor = next(
        f["Properties"] for lid, f in resources(serving, "AWS::Lambda::Function").items() if lid.startswith("MonitorFn")
    )
    service = monitor["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    for alarm in resources(serving, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props["Namespace"] == "Mlops":
            dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            assert set(dims) == {"model", "service"} and dims["service"] == service, props["AlarmName"]


def _role_actions(serving: dict[str, Any], needle: str) -> dict[str, set[str]]:
    """Per role logical id: the actions its policies allow on resources whose ARN contains ``needle``."""
    found: dict[str, set[str]] = {}
    for policy in resources(serving, "AWS::IAM::Policy").values():
        props = policy["Properties"]
        for st in props["PolicyDocument"]["Statement"]:
            if needle in json.dumps(st["Resource"]):
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                for role in props["Roles"]:
                    found.setdefault(role["Ref"], set()).update(actions)
    return found


def test_only_the_deploy_steps_touch_the_deployment_lock(serving: dict[str, Any]) -> None:
    """Issue 9.6: plan takes the lock (conditional PutObject), record and release only read and delete it."""
    by_role = {role.split("Role")[0]: actions for role, actions in _role_actions(serving, "/locks/deployment/").items()}
    assert by_role == {
        "Plan": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"},
        "Record": {"s3:GetObject", "s3:DeleteObject"},
        "Release": {"s3:GetObject", "s3:DeleteObject"},
    }
    # is the lock's owner still RUNNING: DescribeExecution on the deploy machine's executions, for plan only
    owners = _role_actions(serving, ":execution:")
    assert {r.split("Role")[0]: a for r, a in owners.items()} == {"Plan": {"states:DescribeExecution"}}
    (executions,) = [
        st["Resource"]
        for policy in resources(serving, "AWS::IAM::Policy").values()
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
        if st.get("Sid") == "LockOwnerAlive"
    ]
    machine_id, _ = one(serving, "AWS::StepFunctions::StateMachine")
    assert {"Fn::GetAtt": [machine_id, "Name"]} in executions["Fn::Join"][1]


def test_the_deploy_machine_waits_its_turn_and_releases_on_every_failure(definition: dict[str, Any]) -> None:
    states = definition["States"]
    assert definition["StartAt"] == "StartTurns" and states["StartTurns"]["Next"] == "PlanDeployment"
    plan = states["PlanDeployment"]
    assert plan["Parameters"]["execution_id.$"] == "$$.Execution.Id"  # the lock's owner
    choices = {c["StringEquals"]: c["Next"] for c in states["ShouldDeploy?"]["Choices"]}
    assert choices == {"skip": "NothingToDeploy", "superseded": "NotifySuperseded", "wait": "TurnsLeft?"}
    assert states["NotifySuperseded"]["Next"] == "DeploymentSuperseded"
    assert states["DeploymentSuperseded"]["Type"] == "Succeed"
    turns = states["TurnsLeft?"]
    assert turns["Choices"][0]["Next"] == "WaitForTurn" and turns["Default"] == "NotifyGaveUp"
    assert states["WaitForTurn"]["Next"] == "CountTurn" and states["CountTurn"]["Next"] == "PlanDeployment"
    # every Catch goes to the notice, which goes to the release, which ends the execution failed
    for name, state in states.items():
        for catch in state.get("Catch", []):
            if name != "ReleaseDeployment":
                assert catch["Next"] in ("NotifyFailure", f"{name}Throttled?"), name
    assert states["NotifyFailure"]["Next"] == "ReleaseDeployment"
    release = states["ReleaseDeployment"]
    assert release["Next"] == "DeploymentFailed" and release["ResultPath"] is None
    assert [(c["ErrorEquals"], c["Next"]) for c in release["Catch"]] == [(["States.ALL"], "DeploymentFailed")]
    assert release["Parameters"] == {
        "model.$": "$.detail.ModelPackageGroupName",
        "execution_id.$": "$$.Execution.Id",
    }
