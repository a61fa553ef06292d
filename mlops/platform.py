"""The deployed app as its operator sees it: AWS clients, and the app's resources found
through its CloudFormation stacks. One code path for the twin and for AWS.

On the twin the clients point at the twin's one URL and sign as the operator; with
``--aws`` they use your profile. Either way the buckets and state machines are read
from the stacks' outputs (``DescribeStacks``), as the stacks declared them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mlops.naming import STACKS


class PlatformError(RuntimeError):
    """The app's resources cannot be found or reached (not deployed, wrong profile, twin down)."""


@dataclass
class Platform:
    session: boto3.Session
    endpoint_url: str | None = None  # the twin's URL; None for AWS
    label: str = "twin"
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def twin(cls, endpoint_url: str, region: str = "us-east-1") -> Platform:
        session = boto3.Session(aws_access_key_id="operator", aws_secret_access_key="operator", region_name=region)
        return cls(session, endpoint_url, "the local twin")

    @classmethod
    def aws(cls, profile: str | None = None) -> Platform:
        session = boto3.Session(profile_name=profile)
        return cls(session, None, f"AWS ({session.region_name or 'no region'}, profile {profile or 'default'})")

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session.client(
                service, endpoint_url=self.endpoint_url, config=Config(retries={"max_attempts": 3, "mode": "standard"})
            )
        return self._clients[service]

    @cached_property
    def outputs(self) -> dict[str, str]:
        """``{"MlopsData.IncomingBucketName": "..."}`` for every stack of the app."""
        found: dict[str, str] = {}
        cfn = self.client("cloudformation")
        for stack in STACKS.values():
            try:
                described = cfn.describe_stacks(StackName=stack)["Stacks"]
            except ClientError as exc:
                raise PlatformError(f"stack {stack} not found on {self.label}: {exc}") from None
            except BotoCoreError as exc:
                raise PlatformError(f"cannot reach {self.label}: {exc}") from None
            for out in described[0].get("Outputs", []):
                found[f"{stack}.{out['OutputKey']}"] = out["OutputValue"]
        return found

    def output(self, stack: str, key: str) -> str:
        name = f"{STACKS[stack]}.{key}"
        if name not in self.outputs:
            raise PlatformError(f"stack output {name} not found on {self.label}")
        return self.outputs[name]

    def bucket(self, role: str) -> str:
        """incoming, validated, artifacts, quarantine or capture."""
        return self.output("data", f"{role.capitalize()}BucketName")

    def state_machine(self, kind: str) -> str:
        """The ARN of the validation, training, deploy or batch state machine."""
        stack = {"validation": "validation", "training": "training", "deploy": "serving", "batch": "batch"}[kind]
        return self.output(stack, f"{kind.capitalize()}StateMachineArn")

    def state_machines(self) -> dict[str, str]:
        return {kind: self.state_machine(kind) for kind in ("validation", "training", "deploy", "batch")}
