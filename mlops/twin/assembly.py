"""Read a synthesized cloud assembly (``cdk.out``) and resolve its templates.

The twin runs what ``cdk deploy`` would deploy, so it starts from the same
CloudFormation templates. This module gives every resource a physical name the way
CloudFormation would (explicit name property, else ``<stack>-<logicalid>-<hash>``),
and resolves intrinsic functions (Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select,
Fn::Split, Fn::If and conditions, Fn::FindInMap, Fn::ImportValue, Fn::Base64,
Fn::GetAZs, pseudo parameters) to twin names and ARNs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT = "000000000000"
REGION = "us-east-1"

# Property that carries an explicit physical name, per resource type.
NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::LayerVersion": "LayerName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Events::Rule": "Name",
    "AWS::Events::EventBus": "Name",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::Policy": "PolicyName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
}


class AssemblyError(ValueError):
    """The cloud assembly is missing, malformed or uses something the twin cannot resolve."""


@dataclass
class Resource:
    stack: str
    logical_id: str
    type: str
    raw: dict[str, Any]
    physical_id: str = ""
    arn: str = ""

    @property
    def properties(self) -> dict[str, Any]:
        return self.raw.get("Properties", {})

    @property
    def metadata(self) -> dict[str, Any]:
        return self.raw.get("Metadata", {})

    @property
    def path(self) -> str:
        """The construct path (``MlopsValidation/ValidateFn/Resource``), for messages."""
        return str(self.metadata.get("aws:cdk:path", f"{self.stack}/{self.logical_id}"))


@dataclass
class Stack:
    name: str
    template: dict[str, Any]
    resources: dict[str, Resource] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)  # stack tags, as `cdk deploy` passes them


def _physical_name(stack: str, logical_id: str, rtype: str) -> str:
    suffix = hashlib.sha256(f"{stack}/{logical_id}".encode()).hexdigest()[:8]
    if rtype == "AWS::S3::Bucket":
        base = re.sub(r"[^a-z0-9-]", "", f"{stack}-{logical_id}".lower())[:50]
        return f"{base}-{suffix}"
    return f"{stack}-{logical_id}"[:54] + f"-{suffix}"


def _arn(rtype: str, name: str, account: str, region: str) -> str:
    service, kind = rtype.split("::")[1].lower(), rtype.split("::")[2]
    match rtype:
        case "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        case "AWS::Lambda::Function":
            return f"arn:aws:lambda:{region}:{account}:function:{name}"
        case "AWS::Lambda::LayerVersion":
            return f"arn:aws:lambda:{region}:{account}:layer:{name}:1"
        case "AWS::StepFunctions::StateMachine":
            return f"arn:aws:states:{region}:{account}:stateMachine:{name}"
        case "AWS::Events::Rule":
            return f"arn:aws:events:{region}:{account}:rule/{name}"
        case "AWS::Events::EventBus":
            return f"arn:aws:events:{region}:{account}:event-bus/{name}"
        case "AWS::SQS::Queue":
            return f"arn:aws:sqs:{region}:{account}:{name}"
        case "AWS::SNS::Topic":
            return f"arn:aws:sns:{region}:{account}:{name}"
        case "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{region}:{account}:log-group:{name}:*"
        case "AWS::IAM::Role":
            return f"arn:aws:iam::{account}:role/{name}"
        case "AWS::KMS::Key":
            return f"arn:aws:kms:{region}:{account}:key/{name}"
        case "AWS::CloudWatch::Alarm":
            return f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"
        case "AWS::SageMaker::ModelPackageGroup":
            return f"arn:aws:sagemaker:{region}:{account}:model-package-group/{name.lower()}"
    return f"arn:aws:{service}:{region}:{account}:{kind.lower()}/{name}"


class Assembly:
    """All stacks of a cloud assembly, with resolved names and an intrinsic-function resolver."""

    def __init__(self, cdk_out: str | Path, *, account: str = ACCOUNT, region: str = REGION) -> None:
        self.dir = Path(cdk_out)
        self.account = account
        self.region = region
        self._sources: dict[str, Path] | None = None
        manifest_path = self.dir / "manifest.json"
        if not manifest_path.is_file():
            raise AssemblyError(f"no cloud assembly at {self.dir} (manifest.json missing): run `cdk synth` first")
        manifest = json.loads(manifest_path.read_text())
        self.stacks: dict[str, Stack] = {}
        for name in self._stack_order(manifest.get("artifacts", {})):
            props = manifest["artifacts"][name]["properties"]
            template = json.loads((self.dir / props["templateFile"]).read_text())
            self.stacks[name] = Stack(name, template, tags=dict(props.get("tags", {})))
        self.exports: dict[str, Any] = {}
        for stack in self.stacks.values():
            self._load_stack(stack)

    @staticmethod
    def _stack_order(artifacts: dict[str, Any]) -> list[str]:
        stacks = {n: a for n, a in artifacts.items() if a.get("type") == "aws:cloudformation:stack"}
        ordered: list[str] = []

        def visit(name: str, seen: tuple[str, ...] = ()) -> None:
            if name in ordered or name not in stacks:
                return
            if name in seen:
                raise AssemblyError(f"stack dependency cycle: {' -> '.join((*seen, name))}")
            for dep in stacks[name].get("dependencies", []):
                visit(dep, (*seen, name))
            ordered.append(name)

        for name in sorted(stacks):
            visit(name)
        return ordered

    def _load_stack(self, stack: Stack) -> None:
        for logical_id, raw in stack.template.get("Resources", {}).items():
            res = Resource(stack.name, logical_id, raw["Type"], raw)
            stack.resources[logical_id] = res
        for name, cond in stack.template.get("Conditions", {}).items():
            stack.conditions[name] = bool(self.resolve(cond, stack.name))
        for res in stack.resources.values():
            explicit = res.properties.get(NAME_PROPERTY.get(res.type, ""))
            if explicit:
                res.physical_id = str(self.resolve(explicit, stack.name))
            elif res.type == "AWS::KMS::Key":  # key ids are UUIDs; keep them stable across restarts
                res.physical_id = str(uuid.UUID(hashlib.md5(f"{stack.name}/{res.logical_id}".encode()).hexdigest()))
            else:
                res.physical_id = _physical_name(stack.name, res.logical_id, res.type)
            res.arn = _arn(res.type, res.physical_id, self.account, self.region)
        for out in stack.template.get("Outputs", {}).values():
            if "Export" in out:
                self.exports[str(self.resolve(out["Export"]["Name"], stack.name))] = self.resolve(
                    out["Value"], stack.name
                )

    # -- lookup ----------------------------------------------------------------------
    def resources(self, rtype: str | None = None) -> list[Resource]:
        found = [r for s in self.stacks.values() for r in s.resources.values()]
        return [r for r in found if rtype is None or r.type == rtype]

    def included(self, res: Resource) -> bool:
        """False for resources whose Condition is false (CloudFormation does not create them)."""
        cond = res.raw.get("Condition")
        return cond is None or self.stacks[res.stack].conditions.get(cond, False)

    def asset_dir(self, res: Resource) -> Path | None:
        """The local directory of a function's or layer's code asset.

        From the ``aws:asset:path`` metadata when the CLI asked for it, else from the asset
        manifests: the object key the template points at (``Code.S3Key``) is published from
        exactly one source path.
        """
        rel = res.metadata.get("aws:asset:path")
        if rel:
            return self.dir / rel
        code = res.properties.get("Code") or res.properties.get("Content") or {}
        key = code.get("S3Key") if isinstance(code, dict) else None
        return self._asset_sources().get(key) if isinstance(key, str) else None

    def _asset_sources(self) -> dict[str, Path]:
        if self._sources is None:
            self._sources = {}
            for manifest in sorted(self.dir.glob("*.assets.json")):
                for asset in json.loads(manifest.read_text()).get("files", {}).values():
                    for dest in asset.get("destinations", {}).values():
                        self._sources[dest["objectKey"]] = self.dir / asset["source"]["path"]
        return self._sources

    def file_assets(self) -> list[tuple[str, str, Path]]:
        """(bucket, key, local file) of every file asset, from the ``*.assets.json`` manifests.

        Directory assets (``packaging: zip``) are used in place by the twin and not listed.
        """
        found = []
        for manifest in sorted(self.dir.glob("*.assets.json")):
            for asset in json.loads(manifest.read_text()).get("files", {}).values():
                if asset.get("source", {}).get("packaging") != "file":
                    continue
                for dest in asset.get("destinations", {}).values():
                    bucket = dest["bucketName"].replace("${AWS::AccountId}", self.account)
                    bucket = bucket.replace("${AWS::Region}", self.region).replace("${AWS::Partition}", "aws")
                    found.append((bucket, dest["objectKey"], self.dir / asset["source"]["path"]))
        return found

    def find_by_arn(self, arn_or_name: str) -> Resource | None:
        for res in self.resources():
            if arn_or_name in (res.arn, res.physical_id):
                return res
        return None

    # -- intrinsic functions -----------------------------------------------------------
    def resolve(self, value: Any, stack_name: str) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v, stack_name) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            fn = _INTRINSICS.get(key)
            if fn is not None:
                return fn(self, arg, stack_name)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v, stack_name)
            if resolved is not _NO_VALUE:
                out[k] = resolved
        return out

    def _ref(self, name: str, stack_name: str) -> Any:
        pseudo = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{stack_name}/twin",
            "AWS::NoValue": _NO_VALUE,
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        stack = self.stacks[stack_name]
        params = stack.template.get("Parameters", {})
        if name in params:
            return params[name].get("Default", "")
        res = stack.resources.get(name)
        if res is None:
            raise AssemblyError(f"{stack_name}: Ref to unknown resource or parameter {name!r}")
        if res.type in _REF_IS_ARN:
            return res.arn
        if res.type == "AWS::SQS::Queue":
            return self._get_att(res, "QueueUrl")
        return res.physical_id

    def _get_att(self, res: Resource, attr: str) -> Any:
        if attr in ("Arn", "TopicArn", "StateMachineArn", "LayerVersionArn", "KeyArn"):
            return res.arn
        if attr in ("Name", "QueueName", "TopicName", "StateMachineName", "BucketName"):
            return res.physical_id
        if attr == "QueueUrl":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{res.physical_id}"
        if attr in ("DomainName", "RegionalDomainName"):
            return f"{res.physical_id}.s3.{self.region}.amazonaws.com"
        if attr in ("RoleId", "KeyId"):
            return res.physical_id
        return f"{res.physical_id}.{attr}"


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()

# Resource types whose Ref returns the ARN rather than the name.
_REF_IS_ARN = {"AWS::StepFunctions::StateMachine", "AWS::Lambda::LayerVersion", "AWS::SNS::Topic"}


def _fn_get_att(asm: Assembly, arg: Any, stack: str) -> Any:
    logical, attr = arg.split(".", 1) if isinstance(arg, str) else asm.resolve(arg, stack)
    res = asm.stacks[stack].resources.get(logical)
    if res is None:
        raise AssemblyError(f"{stack}: Fn::GetAtt on unknown resource {logical!r}")
    return asm._get_att(res, attr)


def _fn_join(asm: Assembly, arg: Any, stack: str) -> str:
    sep, parts = arg
    return str(asm.resolve(sep, stack)).join(str(p) for p in asm.resolve(parts, stack))


def _fn_sub(asm: Assembly, arg: Any, stack: str) -> str:
    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], asm.resolve(arg[1], stack))

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name in variables:
            return str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            return str(_fn_get_att(asm, name, stack))
        return str(asm._ref(name, stack))

    return re.sub(r"\$\{([^}]+)\}", repl, text)


def _fn_select(asm: Assembly, arg: Any, stack: str) -> Any:
    index, items = asm.resolve(arg, stack)
    return items[int(index)]


def _fn_split(asm: Assembly, arg: Any, stack: str) -> list[str]:
    sep, text = asm.resolve(arg, stack)
    return str(text).split(sep)


def _fn_if(asm: Assembly, arg: Any, stack: str) -> Any:
    cond, yes, no = arg
    return asm.resolve(yes if asm.stacks[stack].conditions.get(cond, False) else no, stack)


def _fn_equals(asm: Assembly, arg: Any, stack: str) -> bool:
    a, b = asm.resolve(arg, stack)
    return a == b


def _condition(asm: Assembly, arg: Any, stack: str) -> bool:
    st = asm.stacks[stack]
    if arg not in st.conditions:
        st.conditions[arg] = bool(asm.resolve(st.template["Conditions"][arg], stack))
    return st.conditions[arg]


def _fn_find_in_map(asm: Assembly, arg: Any, stack: str) -> Any:
    name, top, second = asm.resolve(arg, stack)
    return asm.stacks[stack].template["Mappings"][name][top][second]


def _fn_import_value(asm: Assembly, arg: Any, stack: str) -> Any:
    name = asm.resolve(arg, stack)
    if name not in asm.exports:
        raise AssemblyError(f"{stack}: Fn::ImportValue {name!r} is not exported by any stack in the assembly")
    return asm.exports[name]


_INTRINSICS = {
    "Ref": lambda asm, arg, stack: asm._ref(arg, stack),
    "Fn::GetAtt": _fn_get_att,
    "Fn::Join": _fn_join,
    "Fn::Sub": _fn_sub,
    "Fn::Select": _fn_select,
    "Fn::Split": _fn_split,
    "Fn::If": _fn_if,
    "Fn::Equals": _fn_equals,
    "Fn::Not": lambda asm, arg, stack: not asm.resolve(arg, stack)[0],
    "Fn::And": lambda asm, arg, stack: all(asm.resolve(arg, stack)),
    "Fn::Or": lambda asm, arg, stack: any(asm.resolve(arg, stack)),
    "Condition": _condition,
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::ImportValue": _fn_import_value,
    "Fn::Base64": lambda asm, arg, stack: base64.b64encode(str(asm.resolve(arg, stack)).encode()).decode(),
    "Fn::GetAZs": lambda asm, arg, stack: [f"{asm.region}{z}" for z in "abc"],
}
