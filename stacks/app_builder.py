"""The one way the app is built: ``app.py``, the tests and the twin all go through here.

``new_app`` primes the App with the context of ``cdk.json`` (feature flags included),
so ``python app.py`` run directly (as the twin does) synthesizes exactly what
``cdk synth`` does; the CDK CLI's own context still takes precedence.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from mlops.config import ModelConfig
from mlops.naming import STACKS
from stacks.batch_stack import BatchStack
from stacks.bundling import ROOT
from stacks.data_stack import DataStack
from stacks.props import BatchProps, PlatformProps, ServingProps
from stacks.serving_stack import ServingStack
from stacks.training_stack import TrainingStack
from stacks.validation_stack import ValidationStack

TAGS = {"project": "mlops-twin", "managed-by": "cdk"}


@dataclass(frozen=True)
class MlopsApp:
    data: DataStack
    validation: ValidationStack
    training: TrainingStack
    serving: ServingStack
    batch: BatchStack


def cdk_json_context(root: Path = ROOT) -> dict[str, Any]:
    path = root / "cdk.json"
    return dict(json.loads(path.read_text()).get("context", {})) if path.is_file() else {}


def new_app(context: dict[str, Any] | None = None, **kwargs: Any) -> cdk.App:
    """An App with cdk.json's context as defaults, then ``context`` on top."""
    kwargs.setdefault("analytics_reporting", False)  # as cdk.json's "versionReporting": no AWS::CDK::Metadata
    return cdk.App(context={**cdk_json_context(), **(context or {})}, **kwargs)


def environment() -> cdk.Environment | None:
    """The CLI's account/region when it provides them; otherwise environment-agnostic (offline synth)."""
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    return cdk.Environment(account=account, region=region) if account and region else None


def build_app(app: cdk.App, configs: dict[str, ModelConfig], *, nag: bool = True) -> MlopsApp:
    """Every stack of the platform, tagged, with cdk-nag's AWS Solutions checks on the app."""
    env = environment()
    # explicit stack tags (the @aws-cdk/core:explicitStackTags flag); CloudFormation propagates them
    tags = {**TAGS, "models": " ".join(sorted(configs)) or "none"}
    data = DataStack(app, STACKS["data"], env=env, tags=tags, description="MLOps platform: KMS key and data buckets")
    validation = ValidationStack(
        app,
        STACKS["validation"],
        env=env,
        tags=tags,
        description="MLOps platform: validation of datasets landing in S3",
        data=data.resources,
    )
    platform = PlatformProps(data=data.resources, layers=tuple(validation.layers.all), configs=configs)
    training = TrainingStack(
        app,
        STACKS["training"],
        env=env,
        tags=tags,
        description="MLOps platform: training, evaluation, gate and model registry",
        props=platform,
    )
    batch = BatchStack(
        app,
        STACKS["batch"],
        env=env,
        tags=tags,
        description="MLOps platform: batch scoring of files landing in S3 with each model's champion",
        props=BatchProps(platform=platform, sagemaker_role=training.sagemaker_role),
    )
    serving = ServingStack(
        app,
        STACKS["serving"],
        env=env,
        tags=tags,
        description="MLOps platform: deployment to endpoints, monitoring, alarms and retraining",
        props=ServingProps(
            platform=platform,
            sagemaker_role=training.sagemaker_role,
            training_machine=training.state_machine,
            batch_machine=batch.state_machine,
        ),
    )
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return MlopsApp(data=data, validation=validation, training=training, serving=serving, batch=batch)
