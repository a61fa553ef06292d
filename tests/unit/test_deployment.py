"""Deployment plan and record on moto: create, then update with canary and rollback alarms; one at a time.

Every request a plan makes is checked by the twin's SageMaker rules before moto records
it, so a plan SageMaker would refuse fails here as it would in AWS.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from moto.sagemaker.models import sagemaker_backends

from mlops.config import ModelConfig
from mlops.services.deployment import Deployer, DeploymentBusy, DeploySettings
from mlops.services.registry import approval_description
from mlops.settings import model_config
from mlops.twin.sagemaker.rules import Invalid, SageMakerRules, check_model

RULES = SageMakerRules(lambda: sagemaker_backends["123456789012"]["us-east-1"], "123456789012", "us-east-1")

SETTINGS = DeploySettings(
    "capture-bkt", "artifacts-bkt", "arn:aws:kms:us-east-1:123456789012:key/k", "arn:aws:iam::123456789012:role/sm"
)


@pytest.fixture
def deployer(s3: Any) -> Deployer:
    s3.create_bucket(Bucket="artifacts-bkt")
    sm = boto3.client("sagemaker", region_name="us-east-1")
    for group in ("tumor-classifier", "diabetes-progression"):
        sm.create_model_package_group(ModelPackageGroupName=group)
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    sfn.create_state_machine(
        name="DeployStateMachine",
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/deploy",
    )
    return Deployer(sm, s3, boto3.client("application-autoscaling", region_name="us-east-1"), sfn, SETTINGS)


def _execution(deployer: Deployer, name: str) -> str:
    """A RUNNING deploy execution (moto's stay RUNNING until stopped): the owner of a lock."""
    machine = deployer.lock.sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    return str(deployer.lock.sfn.start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"])


def _plan(deployer: Deployer, arn: str, config: ModelConfig) -> dict[str, Any]:
    """One deploy execution's plan; the test plays the rest, and the execution has ended when it returns
    (so its lock holds nothing: the lock itself is tested with running owners below)."""
    execution = _execution(deployer, uuid.uuid4().hex)
    try:
        return deployer.plan({"ModelPackageArn": arn}, config, execution)
    finally:
        deployer.lock.sfn.stop_execution(executionArn=execution)


def _package(sm: Any, group: str, status: str = "Approved") -> str:
    return sm.create_model_package(
        ModelPackageGroupName=group,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": "sklearn:1.9-0",
                    "ModelDataUrl": "s3://a/m.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus=status,
    )["ModelPackageArn"]


def _apply(sm: Any, plan: dict[str, Any]) -> None:
    """What the deploy state machine sends (an update only as far as SageMaker accepts it: moto has no update)."""
    RULES("CreateModel", plan["model_request"])
    sm.create_model(**plan["model_request"])
    RULES("CreateEndpointConfig", plan["endpoint_config"])
    sm.create_endpoint_config(**plan["endpoint_config"])
    if plan["action"] == "create":
        RULES("CreateEndpoint", plan["create_request"])
        sm.create_endpoint(**plan["create_request"])
    else:
        RULES("UpdateEndpoint", plan["update_request"])


def _endpoint(config: ModelConfig, **changes: Any) -> ModelConfig:
    return config.model_copy(update={"endpoint": config.endpoint.model_copy(update=changes)})


def test_first_deployment_creates_then_records_and_autoscales(deployer: Deployer) -> None:
    sm = deployer.sm
    arn = _package(sm, "tumor-classifier")
    plan = _plan(deployer, arn, model_config("tumor-classifier"))
    assert plan["action"] == "create" and plan["deployment_config"] is None
    variant = plan["endpoint_config"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 2
    capture = plan["endpoint_config"]["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == "s3://capture-bkt/datacapture" and capture["KmsKeyId"] == SETTINGS.kms_key_arn
    assert plan["model_request"]["PrimaryContainer"]["ModelDataUrl"] == "s3://a/m.tar.gz"
    _apply(sm, plan)
    result = deployer.record(plan, model_config("tumor-classifier"))
    assert result["status"] == "deployed" and result["message"].startswith("deployed tumor-classifier v1")
    ep = sm.describe_endpoint(EndpointName="tumor-classifier")["EndpointArn"]
    assert {"Key": "mlops:model-package-arn", "Value": arn} in sm.list_tags(ResourceArn=ep)["Tags"]
    targets = deployer.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert targets[0]["ResourceId"] == "endpoint/tumor-classifier/variant/AllTraffic" and targets[0]["MaxCapacity"] == 4

    second = _plan(deployer, _package(sm, "tumor-classifier"), model_config("tumor-classifier"))
    assert second["action"] == "update"
    policy = second["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert policy == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        "WaitIntervalInSeconds": 300,
    }
    _apply(sm, second)  # SageMaker takes the canary: one instance of two
    alarms = second["deployment_config"]["AutoRollbackConfiguration"]["Alarms"]
    assert alarms == [{"AlarmName": "mlops-tumor-classifier-5xx"}, {"AlarmName": "mlops-tumor-classifier-latency"}]
    # the endpoint still serves the first config: what record reports when an update rolled back
    rolled = deployer.record(second, model_config("tumor-classifier"))
    assert rolled["status"] == "rolled_back" and "keeps serving" in rolled["message"]
    # the model that could not serve is no longer Approved (it must not become the champion)
    assert sm.describe_model_package(ModelPackageName=second["package_arn"])["ModelApprovalStatus"] == "Rejected"
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def test_serverless_endpoints_get_a_serverless_variant_without_capture_kms_volume_or_guardrails(
    deployer: Deployer,
) -> None:
    sm, config = deployer.sm, model_config("diabetes-progression")
    plan = _plan(deployer, _package(sm, "diabetes-progression"), config)
    variant = plan["endpoint_config"]["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "KmsKeyId" not in plan["endpoint_config"] and "DataCaptureConfig" not in plan["endpoint_config"]
    _apply(sm, plan)  # SageMaker accepts it
    update = _plan(deployer, _package(sm, "diabetes-progression"), config)
    assert update["action"] == "update" and "DeploymentConfig" not in update["update_request"]
    _apply(sm, update)


def test_a_one_instance_endpoint_is_updated_all_at_once_with_a_baking_period(deployer: Deployer) -> None:
    sm, config = deployer.sm, _endpoint(model_config("tumor-classifier"), initial_instance_count=1)
    _apply(sm, _plan(deployer, _package(sm, "tumor-classifier"), config))
    update = _plan(deployer, _package(sm, "tumor-classifier"), config)
    policy = update["deployment_config"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    assert policy["TerminationWaitInSeconds"] == config.endpoint.canary.wait_seconds  # the alarms watch the new fleet
    assert update["deployment_config"]["AutoRollbackConfiguration"]["Alarms"]
    _apply(sm, update)  # a 10% canary of one instance is refused by SageMaker; this is not


def test_a_failed_endpoint_is_deleted_then_created_again(deployer: Deployer) -> None:
    sm, config = deployer.sm, model_config("tumor-classifier")
    _apply(sm, _plan(deployer, _package(sm, "tumor-classifier"), config))
    sagemaker_backends["123456789012"]["us-east-1"].endpoints["tumor-classifier"].endpoint_status = "Failed"
    detail = {"ModelPackageArn": _package(sm, "tumor-classifier")}
    with pytest.raises(DeploymentBusy, match="was Failed and is being deleted"):
        _plan(deployer, detail["ModelPackageArn"], config)  # the state machine retries once the deletion is through
    with pytest.raises(sm.exceptions.ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName="tumor-classifier")
    plan = _plan(deployer, detail["ModelPackageArn"], config)
    assert plan["action"] == "create"
    _apply(sm, plan)
    assert sm.describe_endpoint(EndpointName="tumor-classifier")["EndpointConfigName"] == plan["endpoint_config_name"]


def test_only_approved_packages_deploy(deployer: Deployer) -> None:
    arn = _package(deployer.sm, "tumor-classifier", status="PendingManualApproval")
    plan = _plan(deployer, arn, model_config("tumor-classifier"))
    assert plan["action"] == "skip" and "PendingManualApproval" in plan["reason"]


def test_a_failure_reason_over_several_lines_is_one_line_for_the_registry() -> None:
    reason = "deployment rolled_back: new fleet failed to start:\n- method gz: ReadError('truncated header')"
    request = {"ModelPackageArn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/m/1"}
    with pytest.raises(Invalid, match="at 'approvalDescription' failed to satisfy constraint"):
        check_model("UpdateModelPackage", {**request, "ApprovalDescription": reason})
    check_model("UpdateModelPackage", {**request, "ApprovalDescription": approval_description(reason)})
    assert len(approval_description("x" * 2000)) == 1024


def test_a_duplicate_or_late_approval_event_deploys_nothing(deployer: Deployer) -> None:
    sm, config = deployer.sm, model_config("tumor-classifier")
    first = _package(sm, "tumor-classifier")
    older_than_serving = _package(sm, "tumor-classifier")
    serving = _package(sm, "tumor-classifier")
    plan = _plan(deployer, first, config)
    _apply(sm, plan)
    assert deployer.record(plan, config)["status"] == "deployed"
    # then v3 deployed (moto has no UpdateEndpoint): what its record leaves is the tag naming it
    endpoint = sm.describe_endpoint(EndpointName="tumor-classifier")["EndpointArn"]
    sm.add_tags(ResourceArn=endpoint, Tags=[{"Key": "mlops:model-package-arn", "Value": serving}])
    # SageMaker may send a state-change event twice: the package already serving is not deployed again
    again = _plan(deployer, serving, config)
    assert again["action"] == "skip"
    assert again["reason"] == f"{serving} already serves on endpoint tumor-classifier"
    late = _plan(deployer, older_than_serving, config)  # superseded: notified, never Rejected
    assert late["action"] == "superseded" and f"serves a newer version ({serving})" in late["reason"]
    assert late["message"].startswith("tumor-classifier v2 not deployed: superseded")
    assert sm.describe_model_package(ModelPackageName=older_than_serving)["ModelApprovalStatus"] == "Approved"


# -- one deployment per endpoint at a time (issue 9.6) -------------------------------------------
def _serve(deployer: Deployer, plan: dict[str, Any]) -> None:
    """What a successful UpdateEndpoint leaves (moto has none): the endpoint serves the plan's config."""
    _apply(deployer.sm, plan)
    sagemaker_backends["123456789012"]["us-east-1"].endpoints[plan["endpoint_name"]].endpoint_config_name = plan[
        "endpoint_config_name"
    ]


def _status(deployer: Deployer, arn: str) -> str:
    return str(deployer.sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"])


@pytest.fixture
def serving_v1(deployer: Deployer) -> ModelConfig:
    config = model_config("tumor-classifier")
    plan = _plan(deployer, _package(deployer.sm, "tumor-classifier"), config)
    _apply(deployer.sm, plan)
    assert deployer.record(plan, config)["status"] == "deployed"
    return config


def test_racing_approvals_the_second_waits_then_deploys_the_newer(deployer: Deployer, serving_v1: ModelConfig) -> None:
    config, sm = serving_v1, deployer.sm
    v2, v3 = _package(sm, "tumor-classifier"), _package(sm, "tumor-classifier")
    first, second = _execution(deployer, "first"), _execution(deployer, "second")
    plan_v2 = deployer.plan({"ModelPackageArn": v2}, config, first)
    assert plan_v2["action"] == "update" and deployer.lock.holder("tumor-classifier")["execution_id"] == first
    # both saw InService; the second does not send its UpdateEndpoint into the first's update
    waiting = deployer.plan({"ModelPackageArn": v3}, config, second)
    assert waiting["action"] == "wait" and waiting["holder"] == first
    duplicate = deployer.plan({"ModelPackageArn": v3}, config, _execution(deployer, "duplicate"))
    assert duplicate["action"] == "wait"
    _serve(deployer, plan_v2)
    done = deployer.record(plan_v2, config)
    assert done["status"] == "deployed" and done["lock_released"] is True
    assert deployer.lock.holder("tumor-classifier") is None
    plan_v3 = deployer.plan({"ModelPackageArn": v3}, config, second)  # its turn: v3 is newer than v2
    assert plan_v3["action"] == "update" and plan_v3["previous_config"] == plan_v2["endpoint_config_name"]
    _serve(deployer, plan_v3)
    assert deployer.record(plan_v3, config)["status"] == "deployed"
    # the duplicate event's execution, on its turn: v3 already serves, nothing to do, nothing held
    again = deployer.plan({"ModelPackageArn": v3}, config, _execution(deployer, "duplicate-turn"))
    assert again["action"] == "skip" and "already serves" in again["reason"]
    assert deployer.lock.holder("tumor-classifier") is None
    assert (_status(deployer, v2), _status(deployer, v3)) == ("Approved", "Approved")


def test_racing_approvals_the_older_waits_then_ends_superseded(deployer: Deployer, serving_v1: ModelConfig) -> None:
    config, sm = serving_v1, deployer.sm
    v2, v3 = _package(sm, "tumor-classifier"), _package(sm, "tumor-classifier")
    newer_first, older = _execution(deployer, "newer"), _execution(deployer, "older")
    plan_v3 = deployer.plan({"ModelPackageArn": v3}, config, newer_first)
    assert deployer.plan({"ModelPackageArn": v2}, config, older)["action"] == "wait"
    _serve(deployer, plan_v3)
    deployer.record(plan_v3, config)
    late = deployer.plan({"ModelPackageArn": v2}, config, older)
    assert late["action"] == "superseded" and v3 in late["reason"] and "superseded" in late["message"]
    assert deployer.lock.holder("tumor-classifier") is None  # let go at once
    assert _status(deployer, v2) == "Approved"  # never Rejected for another package's deployment


def test_a_deployment_that_ended_without_record_does_not_hold_the_endpoint(
    deployer: Deployer, serving_v1: ModelConfig
) -> None:
    config, sm = serving_v1, deployer.sm
    dead = _execution(deployer, "dead")
    deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, config, dead)
    deployer.lock.sfn.stop_execution(executionArn=dead, error="States.Timeout")  # aborted, timed out, crashed
    successor = _execution(deployer, "successor")
    plan = deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, config, successor)
    assert plan["action"] == "update" and deployer.lock.holder("tumor-classifier")["execution_id"] == successor


def test_the_failure_path_releases_only_its_own_lock(deployer: Deployer, serving_v1: ModelConfig) -> None:
    owner = _execution(deployer, "owner")
    deployer.plan({"ModelPackageArn": _package(deployer.sm, "tumor-classifier")}, serving_v1, owner)
    assert deployer.release("tumor-classifier", _execution(deployer, "other")) is False
    assert deployer.lock.holder("tumor-classifier")["execution_id"] == owner
    assert deployer.release("tumor-classifier", owner) is True and deployer.lock.holder("tumor-classifier") is None


def test_a_plan_that_fails_lets_the_lock_go_and_a_busy_endpoint_keeps_it(
    deployer: Deployer, serving_v1: ModelConfig
) -> None:
    owner = _execution(deployer, "owner")
    endpoint = sagemaker_backends["123456789012"]["us-east-1"].endpoints["tumor-classifier"]
    endpoint.endpoint_status = "Updating"  # changed outside the machine: plan retries in the same execution
    v2 = _package(deployer.sm, "tumor-classifier")
    with pytest.raises(DeploymentBusy):
        deployer.plan({"ModelPackageArn": v2}, serving_v1, owner)
    assert deployer.lock.holder("tumor-classifier")["execution_id"] == owner
    endpoint.endpoint_status = "InService"
    assert deployer.plan({"ModelPackageArn": v2}, serving_v1, owner)["action"] == "update"  # its own retry
    deployer.release("tumor-classifier", owner)
    with pytest.raises(AttributeError):  # a plan that breaks (here: a config without an endpoint)
        deployer.plan({"ModelPackageArn": v2}, serving_v1.model_copy(update={"endpoint": None}), owner)
    assert deployer.lock.holder("tumor-classifier") is None


def test_record_never_rejects_a_package_whose_config_another_deployment_replaced(
    deployer: Deployer, serving_v1: ModelConfig
) -> None:
    sm = deployer.sm
    v2 = _package(sm, "tumor-classifier")
    plan = _plan(deployer, v2, serving_v1)
    _apply(sm, plan)
    plan = {**plan, "previous_config": "some-other-config"}  # what served before is not what serves now
    result = deployer.record(plan, serving_v1)
    assert result["status"] == "superseded" and "not rejected" in result["message"]
    assert _status(deployer, v2) == "Approved"
