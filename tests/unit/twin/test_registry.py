"""The twin's model registry: moto's SageMaker backend plus the events SageMaker emits."""

from __future__ import annotations

from typing import Any

import boto3
from moto import mock_aws

from mlops.twin.sagemaker.registry import Registry

ACCOUNT, REGION = "123456789012", "us-east-1"
SPEC = {
    "Containers": [{"Image": "sklearn:1.9-0", "ModelDataUrl": "s3://b/model.tar.gz"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["application/json"],
}


@mock_aws
def test_creation_and_status_changes_emit_state_change_events() -> None:
    events: list[dict[str, Any]] = []
    registry = Registry(ACCOUNT, REGION, events.append)
    registry.install()
    registry.create_group("tumor-classifier", "demo")
    sm = boto3.client("sagemaker", region_name=REGION)
    arn = sm.create_model_package(
        ModelPackageGroupName="tumor-classifier",
        InferenceSpecification=SPEC,
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties={"run_id": "r1"},
    )["ModelPackageArn"]
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription="looks good")
    sm.update_model_package(ModelPackageArn=arn, ApprovalDescription="same status: no event")

    assert [e["detail"]["ModelApprovalStatus"] for e in events] == ["PendingManualApproval", "Approved"]
    approved = events[-1]
    assert approved["source"] == "aws.sagemaker" and approved["detail-type"] == "SageMaker Model Package State Change"
    assert approved["detail"]["ModelPackageGroupName"] == "tumor-classifier"
    assert approved["detail"]["ModelPackageVersion"] == 1 and approved["resources"] == [arn]
    # an update without CustomerMetadataProperties keeps them, as in AWS (moto alone would wipe them)
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["CustomerMetadataProperties"] == {"run_id": "r1"}


@mock_aws
def test_groups_are_created_once() -> None:
    registry = Registry(ACCOUNT, REGION, lambda event: None)
    registry.create_group("m", "first")
    registry.create_group("m", "second")
    groups = boto3.client("sagemaker", region_name=REGION).list_model_package_groups()["ModelPackageGroupSummaryList"]
    assert [(g["ModelPackageGroupName"], g["ModelPackageGroupDescription"]) for g in groups] == [("m", "first")]
