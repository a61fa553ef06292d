"""What the stacks hand each other, as typed, immutable props (composed in ``stacks.app_builder``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn

from mlops.config import ModelConfig


@dataclass(frozen=True)
class DataResources:
    """The data stack's key and buckets, and whether they are kept when a stack is deleted."""

    key: kms.IKey
    incoming_bucket: s3.IBucket
    validated_bucket: s3.IBucket
    artifacts_bucket: s3.IBucket
    quarantine_bucket: s3.IBucket
    capture_bucket: s3.IBucket
    removal_policy: cdk.RemovalPolicy


@dataclass(frozen=True)
class PlatformProps:
    """What the training and serving stacks share: the data resources, the Lambda layers, the models."""

    data: DataResources
    layers: Sequence[lambda_.ILayerVersion]
    configs: Mapping[str, ModelConfig]


@dataclass(frozen=True)
class ServingProps:
    """The serving stack's inputs: the platform, the training stack's job role and state machine,
    and the batch stack's state machine (each model's batch trigger starts it)."""

    platform: PlatformProps
    sagemaker_role: iam.IRole
    training_machine: sfn.IStateMachine
    batch_machine: sfn.IStateMachine | None = None


@dataclass(frozen=True)
class BatchProps:
    """The batch stack's inputs: the platform and the job role its models run as."""

    platform: PlatformProps
    sagemaker_role: iam.IRole
