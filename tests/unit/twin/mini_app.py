"""A small cloud assembly written by hand, and a twin running it in-process, for API tests.

It has what the app's resources use, without synthesizing the CDK app: two Lambda
functions (one logging to a log group its ``LoggingConfig`` names, one to the default
``/aws/lambda/<name>``), a rule on the default bus targeting a function and a topic, a
topic with an email subscription, and an alarm whose action is the topic.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.validate import ParamValidator

from mlops.twin.api import Call, ServiceApi
from mlops.twin.gateway import Gateway
from mlops.twin.gateway.routing import service_model
from mlops.twin.runtime import Twin

STACK = "MiniApp"
ECHO = """
import json
import os


def handler(event, context):
    print("echo " + json.dumps(event, sort_keys=True))
    if event.get("fail"):
        raise ValueError("asked to fail")
    if "errors" in event:  # a metric in Embedded Metric Format, as Powertools writes it
        print(json.dumps({"_aws": {"Timestamp": 0, "CloudWatchMetrics": [
            {"Namespace": "Mini", "Dimensions": [["service"]], "Metrics": [{"Name": "Errors", "Unit": "Count"}]}
        ]}, "service": "echo", "Errors": event["errors"]}))
    return {
        "echo": event,
        "greeting": os.environ["GREETING"],
        "group": context.log_group_name,
        "stream": context.log_stream_name,
    }
"""
PLAIN = """
def handler(event, context):
    print("plain got", event)
    return event
"""


def _template() -> dict[str, Any]:
    return {
        "Resources": {
            "FnRole": {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {}}},
            "EchoLogs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"RetentionInDays": 7},
            },
            "EchoFn": {
                "Type": "AWS::Lambda::Function",
                "Metadata": {"aws:asset:path": "asset.echo"},
                "Properties": {
                    "Handler": "handler.handler",
                    "Runtime": "python3.12",
                    "Role": {"Fn::GetAtt": ["FnRole", "Arn"]},
                    "Timeout": 10,
                    "MemorySize": 256,
                    "Description": "echoes its event",
                    "Environment": {"Variables": {"GREETING": "hi"}},
                    "LoggingConfig": {"LogGroup": {"Ref": "EchoLogs"}},
                    "TracingConfig": {"Mode": "Active"},
                    "Tags": [{"Key": "team", "Value": "mlops"}],
                },
            },
            "PlainFn": {
                "Type": "AWS::Lambda::Function",
                "Metadata": {"aws:asset:path": "asset.plain"},
                "Properties": {
                    "FunctionName": "mini-plain",
                    "Handler": "handler.handler",
                    "Runtime": "python3.12",
                    "Role": {"Fn::GetAtt": ["FnRole", "Arn"]},
                },
            },
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": "mini-alerts"}},
            "TopicMail": {
                "Type": "AWS::SNS::Subscription",
                "Properties": {"TopicArn": {"Ref": "Topic"}, "Protocol": "email", "Endpoint": "ops@example.com"},
            },
            "EchoRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Description": "mini.app events to the echo function and the topic",
                    "EventPattern": {"source": ["mini.app"]},
                    "State": "ENABLED",
                    "Targets": [
                        {"Id": "echo", "Arn": {"Fn::GetAtt": ["EchoFn", "Arn"]}, "InputPath": "$.detail"},
                        {"Id": "topic", "Arn": {"Ref": "Topic"}},
                    ],
                },
            },
            # as CDK writes them for these targets: EventBridge may invoke the function and publish to the topic
            "EchoFnFromRule": {
                "Type": "AWS::Lambda::Permission",
                "Properties": {
                    "Action": "lambda:InvokeFunction",
                    "FunctionName": {"Fn::GetAtt": ["EchoFn", "Arn"]},
                    "Principal": "events.amazonaws.com",
                    "SourceArn": {"Fn::GetAtt": ["EchoRule", "Arn"]},
                },
            },
            "TopicPolicy": {
                "Type": "AWS::SNS::TopicPolicy",
                "Properties": {
                    "Topics": [{"Ref": "Topic"}],
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "events.amazonaws.com"},
                                "Action": "sns:Publish",
                                "Resource": {"Ref": "Topic"},
                            }
                        ],
                    },
                },
            },
            "ErrorsAlarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {
                    "AlarmName": "mini-errors",
                    "AlarmDescription": "errors of the echo function",
                    "Namespace": "Mini",
                    "MetricName": "Errors",
                    "Dimensions": [{"Name": "service", "Value": "echo"}],
                    "Statistic": "Sum",
                    "Period": 60,
                    "EvaluationPeriods": 1,
                    "Threshold": 1,
                    "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                    "TreatMissingData": "notBreaching",
                    "AlarmActions": [{"Ref": "Topic"}],
                },
            },
        }
    }


def write_assembly(root: Path) -> Path:
    out = root / "cdk.out"
    for name, code in (("echo", ECHO), ("plain", PLAIN)):
        (out / f"asset.{name}").mkdir(parents=True, exist_ok=True)
        (out / f"asset.{name}" / "handler.py").write_text(textwrap.dedent(code))
    (out / f"{STACK}.template.json").write_text(json.dumps(_template(), indent=1))
    manifest = {
        "version": "36.0.0",
        "artifacts": {
            STACK: {"type": "aws:cloudformation:stack", "properties": {"templateFile": f"{STACK}.template.json"}}
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


class ShapeChecked:
    """A mounted API whose every result is checked against the operation's output shape."""

    def __init__(self, api: ServiceApi, problems: list[str]) -> None:
        self.api = api
        self.service = api.service
        self.problems = problems

    def operations(self) -> set[str]:
        return self.api.operations()

    def handle(self, call: Call) -> dict[str, Any]:
        result = self.api.handle(call)
        shape = service_model(self.service).operation_model(call.operation).output_shape
        if shape is not None:
            report = ParamValidator().validate(result, shape)
            if report.has_errors():
                self.problems.append(f"{self.service}:{call.operation}: {report.generate_report()}")
                raise AssertionError(self.problems[-1])
        return result


@contextlib.contextmanager
def running(twin: Twin) -> Iterator[Twin]:
    """A twin started in this process, stopped after (stopping leaves the environment as it was)."""
    try:
        twin.start()
        yield twin
    finally:
        twin.stop()


@pytest.fixture(scope="module")
def mini_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Twin]:
    """The mini app on a twin; every result of the mounted APIs checked against its output shape."""
    root = tmp_path_factory.mktemp("mini")
    problems: list[str] = []
    mount = Gateway.mount_api
    Gateway.mount_api = lambda self, api: mount(self, ShapeChecked(api, problems))  # type: ignore[method-assign]
    try:
        with running(Twin(write_assembly(root), root / "work", time_scale=0.01)) as twin:
            Gateway.mount_api = mount  # type: ignore[method-assign]
            yield twin
    finally:
        Gateway.mount_api = mount  # type: ignore[method-assign]
    assert not problems, problems


def aws_cli(twin: Twin, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The AWS CLI, as a user runs it against the twin: ``AWS_ENDPOINT_URL`` and any credentials."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ENDPOINT_URL": twin.endpoint,
        "AWS_ACCESS_KEY_ID": "operator",
        "AWS_SECRET_ACCESS_KEY": "operator",
        "AWS_DEFAULT_REGION": twin.assembly.region,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    cli = Path(sys.executable).with_name("aws")
    done = subprocess.run(
        [sys.executable, str(cli), *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def aws_json(twin: Twin, *args: str) -> Any:
    out = aws_cli(twin, *args).stdout
    return json.loads(out) if out.strip() else None
