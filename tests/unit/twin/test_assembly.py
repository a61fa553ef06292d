from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops.twin.assembly import Assembly, AssemblyError

DATA = {
    "Conditions": {
        "IsUsEast1": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
        "IsOther": {"Fn::Not": [{"Condition": "IsUsEast1"}]},
    },
    "Mappings": {"Sizes": {"us-east-1": {"memory": 1024}}},
    "Resources": {
        "Incoming1A2B": {
            "Type": "AWS::S3::Bucket",
            "Properties": {"VersioningConfiguration": {"Status": "Enabled"}},
            "Metadata": {"aws:cdk:path": "Data/Incoming/Resource"},
        },
        "Named": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Sub": "named-${AWS::AccountId}"}}},
        "OnlyElsewhere": {"Type": "AWS::SQS::Queue", "Condition": "IsOther"},
    },
    "Outputs": {
        "IncomingBucketName": {"Value": {"Ref": "Incoming1A2B"}, "Export": {"Name": "Data:Incoming"}},
        "IncomingArn": {"Value": {"Fn::GetAtt": ["Incoming1A2B", "Arn"]}, "Export": {"Name": "Data:IncomingArn"}},
    },
}
APP = {
    "Resources": {
        "Fn9": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "handler.handler",
                "MemorySize": {"Fn::FindInMap": ["Sizes", {"Ref": "AWS::Region"}, "memory"]},
                "Environment": {
                    "Variables": {
                        "BUCKET": {"Fn::ImportValue": "Data:Incoming"},
                        "OBJECTS": {"Fn::Join": ["", [{"Fn::ImportValue": "Data:IncomingArn"}, "/*"]]},
                        "WHERE": {"Fn::If": ["IsUsEast1", "home", "away"]},
                        "FIRST": {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]},
                        "SELF": {"Fn::Sub": ["${Name}:${Machine.Name}:${!Literal}", {"Name": "x"}]},
                        "GONE": {"Ref": "AWS::NoValue"},
                    }
                },
            },
            "Metadata": {"aws:asset:path": "asset.abc", "aws:cdk:path": "App/Fn/Resource"},
        },
        "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {}},
    },
    "Mappings": DATA["Mappings"],
    "Conditions": {"IsUsEast1": DATA["Conditions"]["IsUsEast1"]},
}


def _write(tmp_path: Path, stacks: dict[str, dict], deps: dict[str, list[str]] | None = None) -> Path:
    artifacts = {}
    for name, template in stacks.items():
        (tmp_path / f"{name}.template.json").write_text(json.dumps(template))
        artifacts[name] = {
            "type": "aws:cloudformation:stack",
            "properties": {"templateFile": f"{name}.template.json"},
            "dependencies": (deps or {}).get(name, []),
        }
    artifacts["Tree"] = {"type": "cdk:tree"}
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": artifacts}))
    return tmp_path


def test_resolves_names_intrinsics_and_cross_stack_imports(tmp_path: Path) -> None:
    asm = Assembly(_write(tmp_path, {"App": APP, "Data": DATA}, {"App": ["Data"]}))
    assert list(asm.stacks) == ["Data", "App"]  # dependency order, not alphabetical
    bucket = asm.stacks["Data"].resources["Incoming1A2B"]
    assert bucket.physical_id.startswith("data-incoming1a2b-")
    assert asm.stacks["Data"].resources["Named"].physical_id == "named-000000000000"
    fn = asm.stacks["App"].resources["Fn9"]
    props = asm.resolve(fn.properties, "App")
    env = props["Environment"]["Variables"]
    assert env["BUCKET"] == bucket.physical_id
    assert env["OBJECTS"] == f"arn:aws:s3:::{bucket.physical_id}/*"
    assert env["WHERE"] == "home"
    assert env["FIRST"] == "b"
    machine = asm.stacks["App"].resources["Machine"]
    assert env["SELF"] == f"x:{machine.physical_id}:${{Literal}}"
    assert "GONE" not in env
    assert props["MemorySize"] == 1024
    assert asm.asset_dir(fn) == tmp_path / "asset.abc"
    assert asm.find_by_arn(machine.arn) is machine
    assert asm.resolve({"Ref": "Machine"}, "App") == machine.arn  # Ref of a state machine is its ARN


def test_conditions_exclude_resources(tmp_path: Path) -> None:
    asm = Assembly(_write(tmp_path, {"Data": DATA}))
    queue = asm.stacks["Data"].resources["OnlyElsewhere"]
    assert not asm.included(queue)
    assert asm.included(asm.stacks["Data"].resources["Named"])


def test_errors_are_specific(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="run `cdk synth` first"):
        Assembly(tmp_path / "nothing")
    broken = {"Resources": {"F": {"Type": "AWS::Lambda::Function", "Properties": {"Role": {"Ref": "Missing"}}}}}
    asm = Assembly(_write(tmp_path, {"S": broken}))
    with pytest.raises(AssemblyError, match="Ref to unknown resource or parameter 'Missing'"):
        asm.resolve(asm.stacks["S"].resources["F"].properties, "S")
    importer = {"Resources": {}, "Outputs": {"X": {"Value": {"Fn::ImportValue": "nope"}, "Export": {"Name": "y"}}}}
    with pytest.raises(AssemblyError, match="Fn::ImportValue 'nope' is not exported"):
        Assembly(_write(tmp_path, {"S": importer}))
