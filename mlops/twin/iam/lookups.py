"""What the action table needs to know about the twin's state to name a call's resources.

:class:`AssemblyLookups` answers from the templates alone (bucket default keys, key
aliases, topic keys); :class:`TwinLookups` adds the SageMaker control plane's records
(an endpoint config's ``KmsKeyId``, the config an endpoint serves).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops.twin.iam.policies import PolicyStore


class AssemblyLookups:
    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    def bucket_key(self, bucket: str) -> str | None:
        return self.store.bucket_keys.get(bucket)

    def topic_key(self, topic_arn: str) -> str | None:
        return self.store.topic_keys.get(topic_arn)

    def key_arn(self, key: str) -> str:
        return self.store.key_arn(key)

    def endpoint_config(self, name: str) -> Mapping[str, Any] | None:
        return None

    def endpoint(self, name: str) -> Mapping[str, Any] | None:
        return None


class TwinLookups(AssemblyLookups):
    """Reads moto's SageMaker backend, where the twin keeps endpoints and their configs."""

    def _backend(self) -> Any:
        from moto.sagemaker.models import sagemaker_backends

        return sagemaker_backends[self.store.account][self.store.region]

    def endpoint_config(self, name: str) -> Mapping[str, Any] | None:
        config = self._backend().endpoint_configs.get(name)
        if config is None:
            return None
        return {
            "EndpointConfigName": config.endpoint_config_name,
            "KmsKeyId": config.kms_key_id,
            "ProductionVariants": config.production_variants,
            "DataCaptureConfig": config.data_capture_config,
        }

    def endpoint(self, name: str) -> Mapping[str, Any] | None:
        endpoint = self._backend().endpoints.get(name)
        if endpoint is None:
            return None
        return {"EndpointName": endpoint.endpoint_name, "EndpointConfigName": endpoint.endpoint_config_name}
