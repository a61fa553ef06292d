"""Read and change the model registry: the same calls against the twin and real AWS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mlops.s3io import S3Location

APPROVAL_DESCRIPTION_MAX = 1024


def approval_description(text: str) -> str:
    """``ApprovalDescription`` as SageMaker takes it: one line (its pattern ``.*`` matches no line break),
    at most 1024 characters."""
    return " ".join(text.split())[:APPROVAL_DESCRIPTION_MAX]


@dataclass(frozen=True)
class PackageRef:
    model: str
    version: int | None  # None = the newest

    @classmethod
    def parse(cls, text: str) -> PackageRef:
        model, _, version = text.partition(":")
        if not model:
            raise ValueError(f"expected MODEL or MODEL:VERSION, got {text!r}")
        if version and not version.isdigit():
            raise ValueError(f"version must be a number, got {version!r} in {text!r}")
        return cls(model, int(version) if version else None)


class RegistryClient:
    def __init__(self, sagemaker: Any, s3: Any) -> None:
        self.sm = sagemaker
        self.s3 = s3

    def groups(self) -> list[str]:
        names = []
        for page in self.sm.get_paginator("list_model_package_groups").paginate():
            names += [g["ModelPackageGroupName"] for g in page["ModelPackageGroupSummaryList"]]
        return sorted(names)

    def versions(self, model: str) -> list[dict[str, Any]]:
        """Every version of a model, newest first, with status, metrics and data version."""
        out = []
        for page in self.sm.get_paginator("list_model_packages").paginate(
            ModelPackageGroupName=model, SortBy="CreationTime", SortOrder="Descending"
        ):
            for summary in page["ModelPackageSummaryList"]:
                package = self.sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
                props = package.get("CustomerMetadataProperties") or {}
                out.append(
                    {
                        "model": model,
                        "version": package.get("ModelPackageVersion"),
                        "arn": package["ModelPackageArn"],
                        "status": package.get("ModelApprovalStatus"),
                        "created": package.get("CreationTime"),
                        "dataset_version": props.get("dataset_version"),
                        "metrics": {k[7:]: float(v) for k, v in props.items() if k.startswith("metric_")},
                        "description": package.get("ApprovalDescription") or "",
                        "lineage": props.get("lineage"),
                    }
                )
        return out

    def find(self, ref: PackageRef) -> dict[str, Any]:
        versions = self.versions(ref.model)
        if not versions:
            raise LookupError(f"model {ref.model!r} has no registered versions")
        if ref.version is None:
            return versions[0]
        for v in versions:
            if v["version"] == ref.version:
                return v
        known = ", ".join(str(v["version"]) for v in versions)
        raise LookupError(f"model {ref.model!r} has no version {ref.version} (versions: {known})")

    def lineage(self, ref: PackageRef) -> dict[str, Any]:
        package = self.find(ref)
        if not package["lineage"]:
            raise LookupError(f"{ref.model}:{package['version']} records no lineage")
        loc = S3Location.parse(package["lineage"])
        lineage = json.loads(self.s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())
        return {"package": package, "lineage": lineage}

    def set_status(self, ref: PackageRef, status: str, reason: str) -> dict[str, Any]:
        if ref.version is None:
            raise ValueError("say which version to change: MODEL:VERSION")
        package = self.find(ref)
        if package["status"] == status:
            return package
        self.sm.update_model_package(
            ModelPackageArn=package["arn"], ModelApprovalStatus=status, ApprovalDescription=approval_description(reason)
        )
        return self.find(ref)
