from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from mlops.services.registry import PackageRef, RegistryClient


@pytest.fixture
def registry(s3: Any) -> RegistryClient:
    sm = boto3.client("sagemaker", region_name="us-east-1")
    s3.create_bucket(Bucket="artifacts-bkt")
    sm.create_model_package_group(ModelPackageGroupName="m1")
    for i, status in enumerate(("Approved", "PendingManualApproval"), start=1):
        lineage = {"data_uri": f"s3://in/incoming/m1/{i}.csv", "training_job": f"job-{i}", "gate": {"passed": True}}
        s3.put_object(Bucket="artifacts-bkt", Key=f"lin/{i}.json", Body=json.dumps(lineage))
        sm.create_model_package(
            ModelPackageGroupName="m1",
            InferenceSpecification={
                "Containers": [{"Image": "img", "ModelDataUrl": f"s3://artifacts-bkt/{i}.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            ModelApprovalStatus=status,
            CustomerMetadataProperties={"lineage": f"s3://artifacts-bkt/lin/{i}.json", "metric_roc_auc": f"0.9{i}"},
        )
    return RegistryClient(sm, s3)


def test_parse_refs() -> None:
    assert PackageRef.parse("m1") == PackageRef("m1", None)
    assert PackageRef.parse("m1:3") == PackageRef("m1", 3)
    with pytest.raises(ValueError, match="version must be a number"):
        PackageRef.parse("m1:latest")


def test_versions_lineage_and_manual_approval(registry: RegistryClient) -> None:
    versions = registry.versions("m1")
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["status"] == "PendingManualApproval" and versions[1]["metrics"] == {"roc_auc": 0.91}
    assert registry.groups() == ["m1"]
    assert registry.lineage(PackageRef("m1", 1))["lineage"]["training_job"] == "job-1"
    assert registry.lineage(PackageRef("m1", None))["lineage"]["training_job"] == "job-2"  # newest
    approved = registry.set_status(PackageRef("m1", 2), "Approved", "looked at the confusion matrix")
    assert approved["status"] == "Approved" and approved["description"] == "looked at the confusion matrix"
    with pytest.raises(ValueError, match="MODEL:VERSION"):
        registry.set_status(PackageRef("m1", None), "Rejected", "no")
    with pytest.raises(LookupError, match=r"no version 7 \(versions: 2, 1\)"):
        registry.find(PackageRef("m1", 7))
