"""Least-privilege grants on the app's buckets and key, spelled out action by action.

CDK's ``grant_read_write`` hands out ``s3:GetObject*``, ``s3:List*``, ``s3:DeleteObject*``
and ``kms:ReEncrypt*``; these grant exactly the actions the handlers call, on the key
prefixes they own. Object ARNs under a prefix necessarily end in ``*``: those findings
are acknowledged here, once, with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

from stacks.nag import acknowledge_wildcard_resources

READ = ("s3:GetObject",)
WRITE = ("s3:PutObject", "s3:AbortMultipartUpload")
DELETE = ("s3:DeleteObject",)
KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")


def grant_objects(
    role: iam.IRole, bucket: s3.IBucket, prefixes: Sequence[str], actions: Sequence[str], *, sid: str
) -> None:
    """``actions`` on the objects under each prefix (``"training/"``), plus ListBucket on the bucket.

    ListBucket makes a missing key answer 404 rather than 403, which the handlers rely on.
    """
    objects = [bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes]
    role.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=list(actions), resources=objects))
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=f"{sid}List", actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
    )
    acknowledge_wildcard_resources(
        role,
        objects,
        "Object ARNs under the prefixes this role owns in the app's own buckets; keys are data-dependent.",
    )


def grant_key(role: iam.IRole, key: kms.IKey) -> None:
    """Use the data key to read and write objects in the app's buckets (SSE-KMS)."""
    role.add_to_principal_policy(
        iam.PolicyStatement(sid="UseDataKey", actions=list(KEY_ACTIONS), resources=[key.key_arn])
    )


def registry_arns(stack: cdk.Stack, models: Sequence[str]) -> list[str]:
    """The model package groups of these models and their versions."""
    arn = stack.format_arn
    return [
        *(arn(service="sagemaker", resource="model-package-group", resource_name=name) for name in models),
        *(arn(service="sagemaker", resource="model-package", resource_name=f"{name}/*") for name in models),
    ]
