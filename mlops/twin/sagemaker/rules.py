"""SageMaker's request rules on the twin: what SageMaker refuses, the twin refuses, with its error.

:class:`SageMakerRules` is called for every SageMaker request the twin serves (the gateway
calls it after IAM; the ``.sync`` job integrations call it before they run a job), and raises
``ValidationException`` (HTTP 400) as SageMaker answers:

- **the service model** (botocore's): members that must not be null, lengths of strings,
  lists and maps, value ranges, enums and patterns, in SageMaker's own wording
  (``1 validation error detected: Value 'x' at 'endpointName' failed to satisfy
  constraint: ...``); then member types and unknown members, as botocore's
  ``ParamValidator`` reports them;
- **the documented rules the app relies on**: serverless variants take no data capture,
  no volume key and no deployment guardrails; a ``Failed`` endpoint accepts only
  DeleteEndpoint; no update while the endpoint is creating, updating, rolling back or
  deleting; a canary or linear step of at most 50% of the variant's instances; managed
  spot training needs ``MaxWaitTimeInSeconds`` >= ``MaxRuntimeInSeconds`` (and only spot
  takes one); names of models, endpoint configs, endpoints and jobs are unique, and what
  a request names must exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator

from mlops.twin.api import ApiError

# Endpoint statuses in which SageMaker is still changing the endpoint: no update then.
IN_PROGRESS = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


class Invalid(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__("ValidationException", message, 400)


@cache
def _operation(name: str) -> OperationModel | None:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return model.operation_model(name) if name in model.operation_names else None


@cache
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:  # a Java-only construct (\p{...}): botocore's model is the judge elsewhere
        return None


# -- the service model ---------------------------------------------------------------------------
def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _show(value: Any) -> str:
    return "null" if value is None else f"'{value}'" if isinstance(value, str) else str(value)


def _constraints(shape: Shape, value: Any, where: str, out: list[str]) -> None:
    """SageMaker's constraint messages for ``value`` at ``where`` (its wire path, as SageMaker names it)."""
    meta = shape.metadata
    kind = shape.type_name

    def fail(rule: str) -> None:
        out.append(f"Value {_show(value)} at '{where}' failed to satisfy constraint: {rule}")

    if kind in ("string", "list", "map", "blob") and hasattr(value, "__len__"):
        if "min" in meta and len(value) < meta["min"]:
            fail(f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and len(value) > meta["max"]:
            fail(f"Member must have length less than or equal to {meta['max']}")
    if (
        kind in ("integer", "long", "float", "double")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        if "min" in meta and value < meta["min"]:
            fail(f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            fail(f"Member must have value less than or equal to {meta['max']}")
    if kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            fail(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and pattern.fullmatch(value) is None:
            fail(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    if kind == "structure" and isinstance(value, dict):
        for name in shape.required_members:
            if value.get(name) is None:
                at = _join(where, _camel(name))
                out.append(f"Value null at '{at}' failed to satisfy constraint: Member must not be null")
        for name, member in shape.members.items():
            if value.get(name) is not None:
                _constraints(member, value[name], _join(where, _camel(name)), out)
    elif kind == "list" and isinstance(value, list):
        for i, item in enumerate(value, start=1):
            _constraints(shape.member, item, _join(where, f"{i}.member"), out)
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            _constraints(shape.key, key, _join(where, "key"), out)
            _constraints(shape.value, item, _join(where, f"{key}.member"), out)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def check_model(operation: str, params: dict[str, Any]) -> None:
    """The request against botocore's model of the operation; raises :class:`Invalid`."""
    op = _operation(operation)
    if op is None or op.input_shape is None:
        return
    problems: list[str] = []
    _constraints(op.input_shape, params, "", problems)
    if problems:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
        raise Invalid(count + "; ".join(problems))
    report = ParamValidator().validate(params, op.input_shape)
    if report.has_errors():
        raise Invalid(report.generate_report())


# -- the documented rules ------------------------------------------------------------------------
class SageMakerRules:
    """Validates SageMaker requests against the model and the rules, reading the records of ``backend()``."""

    def __init__(self, backend: Callable[[], Any], account: str, region: str) -> None:
        self.backend = backend
        self.account = account
        self.region = region

    def __call__(self, operation: str, params: dict[str, Any]) -> None:
        check_model(operation, params)
        rule = getattr(self, f"_{re.sub(r'(?<!^)(?=[A-Z])', '_', operation).lower()}", None)
        if rule is not None:
            rule(params)

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.region}:{self.account}:{kind}/{name.lower()}"

    # models, endpoint configs, endpoints ------------------------------------------------------
    def _create_model(self, params: dict[str, Any]) -> None:
        name = params["ModelName"]
        if name in self.backend()._models:
            raise Invalid(f'Cannot create already existing model "{self._arn("model", name)}".')

    def _create_endpoint_config(self, params: dict[str, Any]) -> None:
        name = params["EndpointConfigName"]
        if name in self.backend().endpoint_configs:
            raise Invalid(
                f'Cannot create already existing endpoint configuration "{self._arn("endpoint-config", name)}".'
            )
        for variant in params.get("ProductionVariants", []):
            if variant["ModelName"] not in self.backend()._models:
                raise Invalid(f'Could not find model "{self._arn("model", variant["ModelName"])}".')
        serverless = [v["VariantName"] for v in params.get("ProductionVariants", []) if "ServerlessConfig" in v]
        if not serverless:
            return
        if params.get("DataCaptureConfig") is not None:
            raise Invalid(
                f"DataCaptureConfig is not supported for serverless endpoints: production variant "
                f"{serverless[0]} has a ServerlessConfig. Serverless Inference does not support data capture."
            )
        if params.get("KmsKeyId"):
            raise Invalid(
                f"KmsKeyId is not supported for serverless endpoints: production variant {serverless[0]} "
                "has a ServerlessConfig and no ML storage volume to encrypt."
            )

    def _create_endpoint(self, params: dict[str, Any]) -> None:
        name = params["EndpointName"]
        if name in self.backend().endpoints:
            raise Invalid(f'Cannot create already existing endpoint "{self._arn("endpoint", name)}".')
        self._config(params["EndpointConfigName"])

    def _delete_endpoint(self, params: dict[str, Any]) -> None:
        self._endpoint(params["EndpointName"])

    def _update_endpoint(self, params: dict[str, Any]) -> None:
        name = params["EndpointName"]
        endpoint = self._endpoint(name)
        arn = self._arn("endpoint", name)
        if endpoint.endpoint_status == "Failed":
            raise Invalid(
                f'Cannot update endpoint "{arn}" in status Failed: a failed endpoint can only be deleted '
                "(DeleteEndpoint), then created again."
            )
        if endpoint.endpoint_status in IN_PROGRESS:
            raise Invalid(f'Cannot update in-progress endpoint "{arn}".')
        config = self._config(params["EndpointConfigName"])
        deployment = params.get("DeploymentConfig")
        if not deployment:
            return
        variants = config.production_variants
        current = self.backend().endpoint_configs.get(endpoint.endpoint_config_name)
        if any("ServerlessConfig" in v for v in [*variants, *(current.production_variants if current else [])]):
            raise Invalid(
                "DeploymentConfig is not supported for serverless endpoints: deployment guardrails "
                "(blue/green traffic shifting with auto-rollback) need instance-backed production variants."
            )
        routing = (deployment.get("BlueGreenUpdatePolicy") or {}).get("TrafficRoutingConfiguration") or {}
        kind = routing.get("Type")
        size_member = {"CANARY": "CanarySize", "LINEAR": "LinearStepSize"}.get(str(kind))
        if size_member is None:
            return
        size = routing.get(size_member)
        if size is None:
            raise Invalid(f"{size_member} must be specified when TrafficRoutingConfiguration Type is {kind}.")
        for variant in variants:
            count = int(variant.get("InitialInstanceCount") or 0)
            value = int(size["Value"])
            instances = value if size["Type"] == "INSTANCE_COUNT" else math.ceil(count * value / 100)
            if 2 * instances > count:
                raise Invalid(
                    f"{size_member} {size['Type']} {value} is {instances} instance(s) of production variant "
                    f"{variant['VariantName']}, which has {count} instance(s): the value must be less than or "
                    "equal to 50% of the variant's total instance count."
                )

    def _endpoint(self, name: str) -> Any:
        endpoint = self.backend().endpoints.get(name)
        if endpoint is None:
            raise Invalid(f'Could not find endpoint "{self._arn("endpoint", name)}".')
        return endpoint

    def _config(self, name: str) -> Any:
        config = self.backend().endpoint_configs.get(name)
        if config is None:
            raise Invalid(f'Could not find endpoint configuration "{self._arn("endpoint-config", name)}".')
        return config

    # training -------------------------------------------------------------------------------------
    def _unique_job(self, kind: str, name: str) -> None:
        jobs = getattr(self.backend(), f"{kind}_jobs")
        if name in jobs:  # the jobs the twin ran are recorded in moto's backend (moto_ext.record_job)
            arn = self._arn(f"{kind}-job", name)
            raise Invalid(
                f"{kind.capitalize()} job names must be unique within an AWS account and region, and a "
                f"{kind} job with this name already exists ({arn})"
            )

    def _create_processing_job(self, params: dict[str, Any]) -> None:
        self._unique_job("processing", params["ProcessingJobName"])

    def _create_training_job(self, params: dict[str, Any]) -> None:
        self._unique_job("training", params["TrainingJobName"])
        stopping = params.get("StoppingCondition") or {}
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if params.get("EnableManagedSpotTraining"):
            if max_wait is None or max_wait < stopping.get("MaxRuntimeInSeconds", 86400):
                raise Invalid(
                    "Invalid MaxWaitTimeInSeconds. It must be present and be greater than or equal to "
                    "MaxRuntimeInSeconds"
                )
        elif max_wait is not None:
            raise Invalid(
                "Invalid MaxWaitTimeInSeconds. It is only supported when EnableManagedSpotTraining is set to true"
            )

    # batch transform ------------------------------------------------------------------------------
    def _create_transform_job(self, params: dict[str, Any]) -> None:
        self._unique_job("transform", params["TransformJobName"])
        if params["ModelName"] not in self.backend()._models:
            raise Invalid(f'Could not find model "{self._arn("model", params["ModelName"])}".')

    def _stop_transform_job(self, params: dict[str, Any]) -> None:
        self._transform_job(params["TransformJobName"])

    def _transform_job(self, name: str) -> Any:
        job = self.backend().transform_jobs.get(name)
        if job is None:
            raise Invalid(f"Could not find transform job '{self._arn('transform-job', name)}'.")
        return job
