"""Every policy of the app, read from the synthesized templates.

- identity policies per role: the role's inline ``Policies``, its ``ManagedPolicyArns``
  (customer-managed ones from the assembly; AWS-managed ones from the documents moto
  ships in ``moto.iam.aws_managed_policies``, AWS's published versions), and every
  ``AWS::IAM::Policy`` / ``AWS::IAM::ManagedPolicy`` attached to it;
- resource policies: bucket policies (``AWS::S3::BucketPolicy``), key policies
  (``AWS::KMS::Key`` ``KeyPolicy``), topic policies (``AWS::SNS::TopicPolicy``) and
  function permissions (``AWS::Lambda::Permission``, as the statement Lambda builds);
- each bucket's default encryption key, for the KMS calls S3 makes on a caller's behalf.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mlops.twin.assembly import Assembly, Resource
from mlops.twin.iam.evaluation import Document


class PolicyError(ValueError):
    """A policy of the assembly that the twin cannot read."""


@cache
def aws_managed_policy(arn: str) -> Document:
    """An AWS-managed policy document by ARN (AWS's published version, as moto ships it)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    name = arn.rsplit("/", 1)[-1]
    policies = json.loads(aws_managed_policies_data)
    if name not in policies:
        raise PolicyError(f"AWS-managed policy {arn} is not known to the twin (moto.iam.aws_managed_policies)")
    return dict(policies[name]["Document"])


@dataclass
class PolicyStore:
    account: str
    region: str
    identity: dict[str, list[Document]] = field(default_factory=lambda: defaultdict(list))  # role ARN -> docs
    buckets: dict[str, Document] = field(default_factory=dict)  # bucket name -> bucket policy
    keys: dict[str, Document] = field(default_factory=dict)  # key ARN -> key policy
    topics: dict[str, Document] = field(default_factory=dict)  # topic ARN -> topic policy
    functions: dict[str, Document] = field(default_factory=lambda: defaultdict(lambda: {"Statement": []}))
    bucket_keys: dict[str, str] = field(default_factory=dict)  # bucket name -> default SSE-KMS key ARN
    key_aliases: dict[str, str] = field(default_factory=dict)  # alias/name -> key ARN
    topic_keys: dict[str, str] = field(default_factory=dict)  # topic ARN -> KmsMasterKeyId as a key ARN

    @classmethod
    def from_assembly(cls, assembly: Assembly) -> PolicyStore:
        store = cls(assembly.account, assembly.region)
        roles_by_name: dict[str, str] = {}
        for res in assembly.resources("AWS::IAM::Role"):
            if not assembly.included(res):
                continue
            roles_by_name[res.physical_id] = res.arn
            props = _props(assembly, res)
            for inline in props.get("Policies", []):
                store.identity[res.arn].append(inline["PolicyDocument"])
            for arn in props.get("ManagedPolicyArns", []):
                store.identity[res.arn].append(store._managed(assembly, str(arn)))
            store.identity.setdefault(res.arn, [])
        for rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for res in assembly.resources(rtype):
                if not assembly.included(res):
                    continue
                props = _props(assembly, res)
                for role in props.get("Roles", []):
                    arn = roles_by_name.get(str(role), str(role))
                    store.identity[arn].append(props["PolicyDocument"])
        for res in assembly.resources("AWS::S3::BucketPolicy"):
            props = _props(assembly, res)
            store.buckets[str(props["Bucket"])] = props["PolicyDocument"]
        for res in assembly.resources("AWS::KMS::Key"):
            store.keys[res.arn] = _props(assembly, res).get("KeyPolicy") or _default_key_policy(assembly.account)
        for res in assembly.resources("AWS::KMS::Alias"):
            props = _props(assembly, res)
            store.key_aliases[str(props["AliasName"])] = store.key_arn(str(props["TargetKeyId"]))
        for res in assembly.resources("AWS::SNS::TopicPolicy"):
            props = _props(assembly, res)
            for topic in props.get("Topics", []):
                store.topics[str(topic)] = props["PolicyDocument"]
        for res in assembly.resources("AWS::SNS::Topic"):
            key = _props(assembly, res).get("KmsMasterKeyId")
            if key:
                store.topic_keys[res.arn] = store.key_arn(str(key))
        for res in assembly.resources("AWS::Lambda::Permission"):
            store._add_permission(assembly, res)
        for res in assembly.resources("AWS::S3::Bucket"):
            key = _default_kms_key(_props(assembly, res))
            if key:
                store.bucket_keys[res.physical_id] = store.key_arn(key)
        return store

    def _managed(self, assembly: Assembly, arn: str) -> Document:
        if arn.startswith("arn:aws:iam::aws:policy/"):
            return aws_managed_policy(arn)
        for res in assembly.resources("AWS::IAM::ManagedPolicy"):
            if arn in (res.arn, res.physical_id):
                return _props(assembly, res)["PolicyDocument"]
        raise PolicyError(f"managed policy {arn} is neither AWS-managed nor in the assembly")

    def _add_permission(self, assembly: Assembly, res: Resource) -> None:
        """A function permission as the resource-policy statement Lambda stores for it."""
        props = _props(assembly, res)
        principal = str(props["Principal"])
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Action": props["Action"],
            "Resource": str(props["FunctionName"]),
            "Principal": {"Service": principal} if principal.endswith(".amazonaws.com") else {"AWS": principal},
        }
        condition: dict[str, Any] = {}
        if props.get("SourceArn"):
            condition["ArnLike"] = {"AWS:SourceArn": props["SourceArn"]}
        if props.get("SourceAccount"):
            condition["StringEquals"] = {"AWS:SourceAccount": props["SourceAccount"]}
        if condition:
            statement["Condition"] = condition
        function = self.function_arn(str(props["FunctionName"]))
        self.functions[function]["Statement"].append(statement)

    # -- lookups -------------------------------------------------------------------------
    def key_arn(self, key: str) -> str:
        """A key id, alias or ARN as the key's ARN."""
        if key.startswith("arn:aws:kms:") and ":alias/" in key:
            key = key.split(":", 5)[5]
        if key.startswith("alias/"):
            return self.key_aliases.get(key, f"arn:aws:kms:{self.region}:{self.account}:{key}")
        if key.startswith("arn:"):
            return key
        return f"arn:aws:kms:{self.region}:{self.account}:key/{key}"

    def function_arn(self, name: str) -> str:
        if name.startswith("arn:"):
            return ":".join(name.split(":")[:7])  # without a version or alias qualifier
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"

    def roles(self) -> list[str]:
        return sorted(self.identity)


def _props(assembly: Assembly, res: Resource) -> dict[str, Any]:
    props = assembly.resolve(res.properties, res.stack)
    for name in ("PolicyDocument", "KeyPolicy"):
        if isinstance(props.get(name), str):  # CloudFormation accepts a JSON string too
            props[name] = json.loads(props[name])
    for inline in props.get("Policies", []):
        if isinstance(inline.get("PolicyDocument"), str):
            inline["PolicyDocument"] = json.loads(inline["PolicyDocument"])
    return props


def _default_kms_key(bucket_props: dict[str, Any]) -> str | None:
    rules = bucket_props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
    for rule in rules:
        default = rule.get("ServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and default.get("KMSMasterKeyID"):
            return str(default["KMSMasterKeyID"])
    return None


def _default_key_policy(account: str) -> Document:
    """The policy KMS gives a key created without one: the account (IAM) decides."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ],
    }
