"""Deployment plan and record on moto: create, then update with canary and rollback alarms.

Every request a plan makes is checked by the twin's SageMaker rules before moto records
it, so a plan SageMaker would refuse fails here as it would in AWS.
"""

from __future__ import annotations

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
    return Deployer(sm, s3, boto3.client("application-autoscaling", region_name="us-east-1"), SETTINGS)


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
    plan = deployer.plan({"ModelPackageArn": arn}, model_config("tumor-classifier"))
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

    second = deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, model_config("tumor-classifier"))
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
    plan = deployer.plan({"ModelPackageArn": _package(sm, "diabetes-progression")}, config)
    variant = plan["endpoint_config"]["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "KmsKeyId" not in plan["endpoint_config"] and "DataCaptureConfig" not in plan["endpoint_config"]
    _apply(sm, plan)  # SageMaker accepts it
    update = deployer.plan({"ModelPackageArn": _package(sm, "diabetes-progression")}, config)
    assert update["action"] == "update" and "DeploymentConfig" not in update["update_request"]
    _apply(sm, update)


def test_a_one_instance_endpoint_is_updated_all_at_once_with_a_baking_period(deployer: Deployer) -> None:
    sm, config = deployer.sm, _endpoint(model_config("tumor-classifier"), initial_instance_count=1)
    _apply(sm, deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, config))
    update = deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, config)
    policy = update["deployment_config"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    assert policy["TerminationWaitInSeconds"] == config.endpoint.canary.wait_seconds  # the alarms watch the new fleet
    assert update["deployment_config"]["AutoRollbackConfiguration"]["Alarms"]
    _apply(sm, update)  # a 10% canary of one instance is refused by SageMaker; this is not


def test_a_failed_endpoint_is_deleted_then_created_again(deployer: Deployer) -> None:
    sm, config = deployer.sm, model_config("tumor-classifier")
    _apply(sm, deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, config))
    sagemaker_backends["123456789012"]["us-east-1"].endpoints["tumor-classifier"].endpoint_status = "Failed"
    detail = {"ModelPackageArn": _package(sm, "tumor-classifier")}
    with pytest.raises(DeploymentBusy, match="was Failed and is being deleted"):
        deployer.plan(detail, config)  # the state machine retries once the deletion is through
    with pytest.raises(sm.exceptions.ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName="tumor-classifier")
    plan = deployer.plan(detail, config)
    assert plan["action"] == "create"
    _apply(sm, plan)
    assert sm.describe_endpoint(EndpointName="tumor-classifier")["EndpointConfigName"] == plan["endpoint_config_name"]


def test_only_approved_packages_deploy(deployer: Deployer) -> None:
    arn = _package(deployer.sm, "tumor-classifier", status="PendingManualApproval")
    plan = deployer.plan({"ModelPackageArn": arn}, model_config("tumor-classifier"))
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
    plan = deployer.plan({"ModelPackageArn": first}, config)
    _apply(sm, plan)
    assert deployer.record(plan, config)["status"] == "deployed"
    # then v3 deployed (moto has no UpdateEndpoint): what its record leaves is the tag naming it
    endpoint = sm.describe_endpoint(EndpointName="tumor-classifier")["EndpointArn"]
    sm.add_tags(ResourceArn=endpoint, Tags=[{"Key": "mlops:model-package-arn", "Value": serving}])
    # SageMaker may send a state-change event twice: the package already serving is not deployed again
    again = deployer.plan({"ModelPackageArn": serving}, config)
    assert again == {"action": "skip", "reason": f"{serving} already serves on endpoint tumor-classifier"}
    late = deployer.plan({"ModelPackageArn": older_than_serving}, config)
    assert late["action"] == "skip" and f"serves a newer version ({serving})" in late["reason"]
