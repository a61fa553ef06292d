"""The stacks the twin runs, through CloudFormation's API at the gateway (boto3 and the AWS CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from mlops.twin.assembly import Assembly
from mlops.twin.cloudformation.api import CloudFormationApi
from mlops.twin.gateway import Gateway
from mlops.twin.iam import Principals

TEMPLATE = {
    "Description": "the data stack",
    "Resources": {
        "Incoming1A2B": {"Type": "AWS::S3::Bucket", "Metadata": {"aws:cdk:path": "Data/Incoming/Resource"}},
        "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {}}},
    },
    "Outputs": {
        "IncomingBucketName": {
            "Value": {"Ref": "Incoming1A2B"},
            "Description": "where datasets land",
            "Export": {"Name": "Data:Incoming"},
        }
    },
}


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "Data.template.json").write_text(json.dumps(TEMPLATE))
    manifest = {
        "artifacts": {
            "Data": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": "Data.template.json", "tags": {"project": "mlops-twin"}},
            }
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    gateway = Gateway(Principals("123456789012"))
    gateway.mount_api(CloudFormationApi(Assembly(tmp_path)))
    yield gateway.start()
    gateway.stop()


def _client(url: str) -> object:
    return boto3.client(
        "cloudformation", endpoint_url=url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )


def test_describe_stacks_gives_outputs_resolved_to_twin_names(endpoint: str) -> None:
    (stack,) = _client(endpoint).describe_stacks(StackName="Data")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    (output,) = stack["Outputs"]
    assert output["OutputKey"] == "IncomingBucketName" and output["ExportName"] == "Data:Incoming"
    assert output["OutputValue"].startswith("data-incoming")
    assert {"Key": "project", "Value": "mlops-twin"} in stack["Tags"]
    resources = _client(endpoint).list_stack_resources(StackName="Data")["StackResourceSummaries"]
    assert {r["ResourceType"] for r in resources} == {"AWS::S3::Bucket", "AWS::KMS::Key"}


def test_an_unknown_stack_is_the_error_cloudformation_gives(endpoint: str) -> None:
    client = _client(endpoint)
    with pytest.raises(client.exceptions.ClientError, match="Stack with id Nope does not exist"):
        client.describe_stacks(StackName="Nope")


def test_the_aws_cli_reads_the_stacks_and_an_unserved_operation_says_so(endpoint: str) -> None:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    cli = [sys.executable, "-m", "awscli", "cloudformation"]
    out = subprocess.run([*cli, "describe-stacks", "--output", "json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Stacks"][0]["StackName"] == "Data"
    out = subprocess.run(
        [*cli, "create-stack", "--stack-name", "x", "--template-body", "{}"], env=env, capture_output=True, text=True
    )
    assert out.returncode != 0
    assert "cloudformation:CreateStack is not implemented by the local twin" in out.stderr
