"""Deploying an approved model package: the plan before, the verdict after.

One deployment per endpoint at a time: ``plan`` takes the endpoint's deployment lock
(``execution_lock``: it names the deploy execution that owns it and is free as soon as that
execution is not RUNNING); ``record`` releases it, and so does the state machine's failure
path. A plan that finds the lock held answers ``wait``: the state machine waits and plans
again, and then deploys the package if it is newer than what serves by then, or ends it as
``superseded`` (notified, never Rejected). A package already serving (a duplicate
state-change event) or not Approved deploys nothing (``skip``).

``plan`` turns a "Model Package State Change" (Approved) into the exact SageMaker
requests the deploy state machine sends: CreateModel, CreateEndpointConfig (instance
variant with data capture and the volume key, or serverless variant with neither) and
CreateEndpoint or UpdateEndpoint. An update of an instance endpoint is blue/green with
auto-rollback alarms: a canary when the variant has two instances or more, else all at
once with the canary's wait as the baking period (SageMaker takes a canary of at most
half the variant's instances); a serverless endpoint is updated without guardrails,
which it does not support. An endpoint that is ``Failed`` accepts only DeleteEndpoint:
``plan`` deletes it and answers busy, so the state machine retries once it is gone and
creates it again. ``record`` checks what the endpoint
serves once it is InService again: the new config (deployed) or the old one (rolled
back), tags the endpoint with the package it serves, sets up autoscaling, and writes a
deployment record. Only a package that failed itself (its endpoint failed or rolled back to
the config it replaced) is set to Rejected.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from mlops import env_names as E
from mlops.config import ModelConfig
from mlops.naming import CAPTURE_PREFIX, DEPLOYMENT_LOCKS, ROLLBACK_ALARM_KINDS, alarm_name, endpoint_name
from mlops.s3io import S3Location, put_json
from mlops.services.execution_lock import ExecutionLock
from mlops.services.monitoring import PACKAGE_TAG, tagged_package
from mlops.services.registry import approval_description

BUSY = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


@dataclass(frozen=True)
class DeploySettings:
    capture_bucket: str
    artifacts_bucket: str
    kms_key_arn: str
    execution_role_arn: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> DeploySettings:
        keys = {
            "capture_bucket": E.CAPTURE_BUCKET,
            "artifacts_bucket": E.ARTIFACTS_BUCKET,
            "kms_key_arn": E.KMS_KEY_ARN,
            "execution_role_arn": E.SAGEMAKER_ROLE_ARN,
        }
        missing = [v for v in keys.values() if not env.get(v)]
        if missing:
            raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
        return cls(**{k: env[v] for k, v in keys.items()})


def _version(package_arn: str) -> int:
    """A versioned model package's version, from its ARN (``...:model-package/<group>/<version>``)."""
    tail = package_arn.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class DeploymentBusy(RuntimeError):
    """The endpoint is mid-change; the state machine retries later."""


class Deployer:
    def __init__(self, sagemaker: Any, s3: Any, autoscaling: Any, stepfunctions: Any, settings: DeploySettings) -> None:
        self.sm = sagemaker
        self.s3 = s3
        self.autoscaling = autoscaling
        self.settings = settings
        self.lock = ExecutionLock(s3, stepfunctions, settings.artifacts_bucket, DEPLOYMENT_LOCKS)

    def _endpoint(self, name: str) -> dict[str, Any] | None:
        """DescribeEndpoint's answer; None when there is no such endpoint."""
        try:
            return dict(self.sm.describe_endpoint(EndpointName=name))
        except ClientError as exc:
            if "Could not find endpoint" in str(exc) or exc.response["Error"]["Code"] == "ValidationException":
                return None
            raise

    def plan(self, detail: dict[str, Any], config: ModelConfig, execution_id: str) -> dict[str, Any]:
        """Take the endpoint's lock and plan, or answer ``wait`` (held), ``skip`` or ``superseded`` (lock let go).

        ``DeploymentBusy`` keeps the lock (the state machine retries the plan in the same
        execution); any other error lets it go.
        """
        package_arn = detail["ModelPackageArn"]
        package = self.sm.describe_model_package(ModelPackageName=package_arn)
        if package.get("ModelApprovalStatus") != "Approved":
            return {"action": "skip", "reason": f"{package_arn} is {package.get('ModelApprovalStatus')}, not Approved"}
        acquired = self.lock.acquire(config.name, execution_id)
        if not acquired.taken:
            holder = (acquired.holder or {}).get("execution_id")
            return {
                "action": "wait",
                "holder": holder,
                "reason": f"endpoint {endpoint_name(config.name)} is being deployed by {holder}; {package_arn} waits",
            }
        try:
            plan = self._plan(package_arn, package, config)
        except DeploymentBusy:
            raise
        except Exception:
            self.lock.release(config.name, execution_id)
            raise
        if plan["action"] in ("skip", "superseded"):
            self.lock.release(config.name, execution_id)
        return {**plan, "execution_id": execution_id}

    def release(self, model: str, execution_id: str) -> bool:
        """The failure path's release: frees the lock if ``execution_id`` holds it."""
        return self.lock.release(model, execution_id)

    def _plan(self, package_arn: str, package: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
        container = package["InferenceSpecification"]["Containers"][0]
        version = package.get("ModelPackageVersion", 0)
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        name = endpoint_name(config.name)
        model_name = re.sub(r"[^a-zA-Z0-9-]", "-", f"{config.name}-v{version}-{stamp}")[:63]
        endpoint = self._endpoint(name)
        status = None if endpoint is None else str(endpoint["EndpointStatus"])
        if status == "Failed":  # SageMaker allows only DeleteEndpoint on it
            self.sm.delete_endpoint(EndpointName=name)
            raise DeploymentBusy(f"endpoint {name} was Failed and is being deleted; the deployment creates it again")
        if status in BUSY:
            raise DeploymentBusy(f"endpoint {name} is {status}; the deployment retries when it settles")
        if endpoint is not None and status == "InService":
            serving = tagged_package(self.sm, endpoint["EndpointArn"])
            if serving == package_arn:  # SageMaker may deliver a state-change event twice
                return {"action": "skip", "reason": f"{package_arn} already serves on endpoint {name}"}
            if serving is not None and _version(serving) > version:  # a later approval deployed first
                reason = f"endpoint {name} serves a newer version ({serving})"
                return {
                    "action": "superseded",
                    "reason": reason,
                    "message": f"{config.name} v{version} not deployed: superseded, {reason}",
                }
        action = "create" if status is None else "update"
        ep = config.endpoint
        if ep.kind == "serverless":
            variant = {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "ServerlessConfig": {
                    "MemorySizeInMB": ep.serverless.memory_mb,
                    "MaxConcurrency": ep.serverless.max_concurrency,
                },
            }
        else:
            variant = {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": ep.instance_type,
                "InitialInstanceCount": ep.initial_instance_count,
                "InitialVariantWeight": 1.0,
            }
        endpoint_config: dict[str, Any] = {
            "EndpointConfigName": model_name,
            "ProductionVariants": [variant],
            "Tags": [{"Key": "mlops:model", "Value": config.name}],
        }
        if ep.data_capture_percent > 0:  # never for serverless (the config refuses it)
            endpoint_config["DataCaptureConfig"] = {
                "EnableCapture": True,
                "InitialSamplingPercentage": ep.data_capture_percent,
                "DestinationS3Uri": f"s3://{self.settings.capture_bucket}/{CAPTURE_PREFIX}",
                "KmsKeyId": self.settings.kms_key_arn,
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
            }
        if ep.kind == "instance":
            endpoint_config["KmsKeyId"] = self.settings.kms_key_arn  # instance storage; not allowed for serverless
        deployment_config = _deployment_config(config) if action == "update" and ep.kind == "instance" else None
        return {
            "action": action,
            "model": config.name,
            "package_arn": package_arn,
            "package_version": version,
            "endpoint_name": name,
            "model_name": model_name,
            "endpoint_config_name": model_name,
            "model_request": {
                "ModelName": model_name,
                "ExecutionRoleArn": self.settings.execution_role_arn,
                "PrimaryContainer": {
                    "Image": container["Image"],
                    "ModelDataUrl": container["ModelDataUrl"],
                    "Environment": container.get("Environment", {}),
                },
                "Tags": [{"Key": PACKAGE_TAG, "Value": package_arn}, {"Key": "mlops:model", "Value": config.name}],
            },
            "endpoint_config": endpoint_config,
            "deployment_config": deployment_config,
            # complete request bodies, so the state machine passes them as they are (InputPath)
            "create_request": {"EndpointName": name, "EndpointConfigName": model_name},
            "update_request": {
                "EndpointName": name,
                "EndpointConfigName": model_name,
                **({"DeploymentConfig": deployment_config} if deployment_config else {}),
            },
            "kind": ep.kind,
            # what served before: an update that ends on it rolled back; on anything else, it did not
            "previous_config": None if endpoint is None else endpoint.get("EndpointConfigName"),
            "started_at": time.time(),
        }

    def record(self, plan: dict[str, Any], config: ModelConfig) -> dict[str, Any]:
        """The verdict on the deployment, then the lock let go (the state machine's Catch lets it go on errors)."""
        described = self.sm.describe_endpoint(EndpointName=plan["endpoint_name"])
        serving = described.get("EndpointConfigName")
        in_service = described["EndpointStatus"] == "InService"
        deployed = in_service and serving == plan["endpoint_config_name"]
        # Another config than ours or the one we replaced: not this package's failure (never under the lock)
        replaced = in_service and not deployed and serving != plan.get("previous_config")
        result: dict[str, Any] = {
            "model": config.name,
            "endpoint_name": plan["endpoint_name"],
            "package_arn": plan["package_arn"],
            "package_version": plan["package_version"],
            "status": "deployed"
            if deployed
            else "superseded"
            if replaced
            else "rolled_back"
            if in_service
            else "failed",
            "serving_config": serving,
            "failure_reason": described.get("FailureReason"),
            "seconds": round(time.time() - float(plan.get("started_at", time.time())), 1),
        }
        if deployed:
            self.sm.add_tags(
                ResourceArn=described["EndpointArn"], Tags=[{"Key": PACKAGE_TAG, "Value": plan["package_arn"]}]
            )
            if plan["kind"] == "instance":
                result["autoscaling"] = self._autoscale(plan["endpoint_name"], config)
        elif not replaced:
            # A model that could not serve must not stay Approved: it would become the champion
            # that the next candidate is compared with (and be redeployed on the next approval).
            self.sm.update_model_package(
                ModelPackageArn=plan["package_arn"],
                ModelApprovalStatus="Rejected",
                ApprovalDescription=approval_description(f"deployment {result['status']}: {result['failure_reason']}"),
            )
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        record = S3Location(self.settings.artifacts_bucket, f"deployments/{config.name}/{stamp}.json")
        put_json(self.s3, record, {**result, "plan": plan})
        result["record_uri"] = record.uri
        result["message"] = _message(result)
        if plan.get("execution_id"):
            result["lock_released"] = self.lock.release(config.name, str(plan["execution_id"]))
        return result

    def _autoscale(self, endpoint: str, config: ModelConfig) -> dict[str, Any]:
        resource = f"endpoint/{endpoint}/variant/AllTraffic"
        scaling = config.endpoint.autoscaling
        self.autoscaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=scaling.min_instances,
            MaxCapacity=scaling.max_instances,
        )
        self.autoscaling.put_scaling_policy(
            PolicyName=f"{endpoint}-invocations",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": float(scaling.target_invocations_per_instance),
                "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        )
        return {"resource": resource, "min": scaling.min_instances, "max": scaling.max_instances}


def _deployment_config(config: ModelConfig) -> dict[str, Any]:
    """Blue/green with the rollback alarms: a canary from two instances, else all at once with a baking period."""
    ep = config.endpoint
    if ep.canary is None:
        raise ValueError(f"{config.name}: a serverless endpoint takes no deployment config")
    wait = ep.canary.wait_seconds
    if ep.uses_canary:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": ep.canary.percent},
            "WaitIntervalInSeconds": wait,
        }
        baking = 0
    else:  # one instance: a canary would be the whole fleet; the old fleet stays while the alarms watch
        routing = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        baking = wait
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": baking,
            "MaximumExecutionTimeoutInSeconds": max(600, wait * 3 + 600),
        },
        "AutoRollbackConfiguration": {
            "Alarms": [{"AlarmName": alarm_name(config.name, k)} for k in ROLLBACK_ALARM_KINDS]
        },
    }


def _message(result: dict[str, Any]) -> str:
    what = f"{result['model']} v{result['package_version']} on endpoint {result['endpoint_name']}"
    if result["status"] == "deployed":
        return f"deployed {what} in {result['seconds']} s"
    if result["status"] == "superseded":
        return f"{what} was replaced by {result['serving_config']} before it could be verified; not rejected"
    if result["status"] == "rolled_back":
        return f"rolled back {what}: {result['failure_reason']}; {result['serving_config']} keeps serving"
    return f"deployment of {what} failed: {result['failure_reason']}"
