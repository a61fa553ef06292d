"""The two layers every project Lambda uses, and the runtime they are built for."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.bundling import core_layer_code, deps_layer_code

# The newest Python runtime that aws-cdk-lib knows (cdk-nag's AwsSolutions-L1 asks for it).
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.X86_64


class ProjectLayers(Construct):
    """``Core``: the ``mlops`` package and model configs; ``Deps``: third-party wheels."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        common: dict[str, Any] = {"compatible_runtimes": [RUNTIME], "compatible_architectures": [ARCHITECTURE]}
        self.deps = lambda_.LayerVersion(
            self,
            "Deps",
            code=deps_layer_code(RUNTIME),
            description="Third-party packages (functions/layer-requirements.txt) as Linux wheels",
            **common,
        )
        self.core = lambda_.LayerVersion(
            self,
            "Core",
            code=core_layer_code(),
            description="The mlops package (contract engine, profile, services) and the model configs",
            **common,
        )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.deps, self.core]
