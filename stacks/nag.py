"""cdk-nag (v3) acknowledgments, each with its reason.

cdk-nag 3 runs as a CDK policy-validation plugin: any unacknowledged finding, error or
warning, fails synthesis. Granular rules (IAM5) are acknowledged per finding, as
``AwsSolutions-IAM5[Resource::<flattened ARN>]``. An ARN that comes from another stack
only becomes its ``Fn::ImportValue`` once CDK has prepared the app, so such findings are
computed then (a construct validation runs after prepare and before the plugins), by
flattening the ARN exactly as cdk-nag does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
import constructs
import jsii
from constructs import IConstruct

IAM5 = "AwsSolutions-IAM5"


def acknowledge(scope: IConstruct, rule: str, reason: str, findings: Sequence[str] = ()) -> None:
    """Acknowledge ``rule`` on ``scope`` and below; for a granular rule, only the given findings."""
    ids = [f"{rule}[{finding}]" for finding in findings] or [rule]
    for rule_id in ids:
        cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def acknowledge_wildcard_resources(scope: IConstruct, resources: Sequence[str], reason: str) -> None:
    """Acknowledge IAM5 for these resource ARNs (tokens welcome) in the policies under ``scope``."""
    scope.node.add_validation(_WildcardResources(scope, list(resources), reason))


def flatten(reference: Any) -> str:
    """A resolved CloudFormation value as cdk-nag renders it in finding ids."""
    if isinstance(reference, str):
        return reference.replace("${", "<").replace("}", ">")
    if isinstance(reference, dict):
        if "Fn::Join" in reference:
            delimiter, items = reference["Fn::Join"]
            return delimiter.join(flatten(item) for item in items)
        if "Fn::Sub" in reference:
            return flatten(reference["Fn::Sub"])
        if "Fn::GetAtt" in reference:
            resource, attribute = reference["Fn::GetAtt"]
            return f"<{flatten(resource)}.{flatten(attribute)}>"
        if "Fn::ImportValue" in reference:
            return flatten(reference["Fn::ImportValue"])
        if "Ref" in reference:
            return f"<{flatten(reference['Ref'])}>"
    return json.dumps(reference, separators=(",", ":"))


@jsii.implements(constructs.IValidation)
class _WildcardResources:
    def __init__(self, scope: IConstruct, resources: list[str], reason: str) -> None:
        self.scope = scope
        self.resources = resources
        self.reason = reason

    def validate(self) -> list[str]:
        stack = cdk.Stack.of(self.scope)
        findings = [f"Resource::{flatten(stack.resolve(r))}" for r in self.resources]
        acknowledge(self.scope, IAM5, self.reason, [f for f in findings if "*" in f])
        return []
