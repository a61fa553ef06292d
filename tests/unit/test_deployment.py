"""Deployment plan and record on moto: create, then update with canary and rollback alarms."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from mlops.services.deployment import Deployer, DeploySettings
from mlops.settings import model_config

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
    sm.create_model(**plan["model_request"])
    sm.create_endpoint_config(**plan["endpoint_config"])
    sm.create_endpoint(EndpointName=plan["endpoint_name"], EndpointConfigName=plan["endpoint_config_name"])


def test_first_deployment_creates_then_records_and_autoscales(deployer: Deployer) -> None:
    sm = deployer.sm
    arn = _package(sm, "tumor-classifier")
    plan = deployer.plan({"ModelPackageArn": arn}, model_config("tumor-classifier"))
    assert plan["action"] == "create" and plan["deployment_config"] is None
    variant = plan["endpoint_config"]["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.m5.large" and variant["InitialInstanceCount"] == 1
    capture = plan["endpoint_config"]["DataCaptureConfig"]
    assert capture["DestinationS3Uri"] == "s3://capture-bkt/datacapture" and capture["KmsKeyId"] == SETTINGS.kms_key_arn
    assert plan["model_request"]["PrimaryContainer"]["ModelDataUrl"] == "s3://a/m.tar.gz"
    _apply(sm, plan)
    result = deployer.record(plan, model_config("tumor-classifier"))
    assert result["status"] == "deployed" and result["message"].startswith("deployed tumor-classifier v1")
    ep = sm.describe_endpoint(EndpointName="tumor-classifier")["EndpointArn"]
    assert {"Key": "mlops:model-package-arn", "Value": arn} in sm.list_tags(ResourceArn=ep)["Tags"]
    targets = deployer.autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert targets[0]["ResourceId"] == "endpoint/tumor-classifier/variant/AllTraffic" and targets[0]["MaxCapacity"] == 3

    second = deployer.plan({"ModelPackageArn": _package(sm, "tumor-classifier")}, model_config("tumor-classifier"))
    assert second["action"] == "update"
    policy = second["deployment_config"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert policy == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
        "WaitIntervalInSeconds": 300,
    }
    alarms = second["deployment_config"]["AutoRollbackConfiguration"]["Alarms"]
    assert alarms == [{"AlarmName": "mlops-tumor-classifier-5xx"}, {"AlarmName": "mlops-tumor-classifier-latency"}]
    # the endpoint still serves the first config: what record reports when an update rolled back
    rolled = deployer.record(second, model_config("tumor-classifier"))
    assert rolled["status"] == "rolled_back" and "keeps serving" in rolled["message"]
    # the model that could not serve is no longer Approved (it must not become the champion)
    assert sm.describe_model_package(ModelPackageName=second["package_arn"])["ModelApprovalStatus"] == "Rejected"
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def test_serverless_endpoints_get_a_serverless_variant_and_no_kms_volume(deployer: Deployer) -> None:
    plan = deployer.plan(
        {"ModelPackageArn": _package(deployer.sm, "diabetes-progression")}, model_config("diabetes-progression")
    )
    variant = plan["endpoint_config"]["ProductionVariants"][0]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "KmsKeyId" not in plan["endpoint_config"]
    assert plan["endpoint_config"]["DataCaptureConfig"]["InitialSamplingPercentage"] == 50


def test_only_approved_packages_deploy(deployer: Deployer) -> None:
    arn = _package(deployer.sm, "tumor-classifier", status="PendingManualApproval")
    plan = deployer.plan({"ModelPackageArn": arn}, model_config("tumor-classifier"))
    assert plan["action"] == "skip" and "PendingManualApproval" in plan["reason"]
