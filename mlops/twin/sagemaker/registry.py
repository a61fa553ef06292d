"""The SageMaker model registry on the twin: moto's backend plus the events AWS emits.

Handlers and the CLI use the real SageMaker API (boto3 against the twin's endpoint).
What moto lacks is added through :mod:`mlops.twin.moto_ext`:

- every model package creation and approval-status change emits a
  "SageMaker Model Package State Change" event on the twin's bus, as SageMaker does;
- ``UpdateModelPackage`` without ``CustomerMetadataProperties``, ``ModelApprovalStatus``
  or ``ApprovalDescription`` leaves them as they were (moto would set them to None; AWS
  does not).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.sagemaker.models import sagemaker_backends

from mlops.twin import moto_ext


class Registry:
    def __init__(self, account: str, region: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.account = account
        self.region = region
        self.emit = emit
        self._installed = False

    @property
    def backend(self) -> Any:
        return sagemaker_backends[self.account][self.region]

    def install(self) -> None:
        if not self._installed:
            moto_ext.on_model_package_change(self.backend, self._changed)
            self._installed = True

    def create_group(self, name: str, description: str = "") -> None:
        if name not in self.backend.model_package_groups:
            self.backend.create_model_package_group(name, description or name, [])

    def _package(self, arn_or_name: str) -> Any:
        return moto_ext.model_package(self.backend, arn_or_name)

    def _changed(self, arn: str) -> None:
        package = self._package(arn)
        if package is None:
            return
        detail = {
            "ModelPackageGroupName": package.model_package_group_name,
            "ModelPackageVersion": package.model_package_version,
            "ModelPackageArn": package.arn,
            "ModelPackageName": package.model_package_name,
            "CreationTime": package.creation_time.isoformat(),
            "InferenceSpecification": package.inference_specification,
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": package.model_approval_status,
            "ApprovalDescription": package.approval_description,
            "CustomerMetadataProperties": package.customer_metadata_properties or {},
            "ModelMetrics": package.model_metrics,
        }
        self.emit(
            {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "SageMaker Model Package State Change",
                "source": "aws.sagemaker",
                "account": self.account,
                "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [package.arn],
                "detail": detail,
            }
        )
