"""The EventBridge API of the twin: the assembly's rules as the bus runs them; PutEvents fires them."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from mlops.twin.runtime import Twin
from tests.unit.twin.mini_app import aws_cli, aws_json


def _rule(twin: Twin) -> str:
    return next(r.name for r in twin.bus.rules() if "EchoRule" in r.name)


def test_rules_and_targets_are_the_assembly_s(mini_twin: Twin) -> None:
    events = mini_twin.client("events")
    rules = events.list_rules()["Rules"]
    assert [r["Name"] for r in rules] == [_rule(mini_twin)]
    assert json.loads(rules[0]["EventPattern"]) == {"source": ["mini.app"]} and rules[0]["State"] == "ENABLED"
    described = events.describe_rule(Name=_rule(mini_twin))
    assert described["Description"] == "mini.app events to the echo function and the topic"
    assert described["EventBusName"] == "default" and described["Arn"].endswith(f"rule/{_rule(mini_twin)}")
    targets = {t["Id"]: t for t in events.list_targets_by_rule(Rule=_rule(mini_twin))["Targets"]}
    assert targets["echo"]["InputPath"] == "$.detail" and targets["echo"]["Arn"].endswith(
        ":function:" + next(n for n in mini_twin.functions if "EchoFn" in n)
    )
    assert targets["topic"]["Arn"] == "arn:aws:sns:us-east-1:000000000000:mini-alerts"
    assert events.list_rules(NamePrefix="other")["Rules"] == []
    with pytest.raises(ClientError) as caught:
        events.describe_rule(Name="missing")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_put_events_go_through_the_twin_and_fire_rules(mini_twin: Twin) -> None:
    marker = f"m{time.time_ns()}"
    got = mini_twin.client("events").put_events(
        Entries=[
            {"Source": "mini.app", "DetailType": "Thing Happened", "Detail": json.dumps({"marker": marker})},
            {"Source": "aws.s3", "DetailType": "Object Created", "Detail": "{}"},
            {"Source": "mini.app", "DetailType": "Broken", "Detail": "{not json"},
        ]
    )
    assert got["FailedEntryCount"] == 2
    assert [e.get("ErrorCode") for e in got["Entries"]] == [None, "NotAuthorizedForSourceException", "MalformedDetail"]
    recorded = (mini_twin.workdir / "events.jsonl").read_text()
    assert got["Entries"][0]["EventId"] in recorded  # the twin's event log, as every event the twin emits
    logs = mini_twin.client("logs")
    group = next(f.log_group for n, f in mini_twin.functions.items() if "EchoFn" in n)
    deadline = time.monotonic() + 30
    while not logs.filter_log_events(logGroupName=group, filterPattern=f'"{marker}"')["events"]:
        assert time.monotonic() < deadline, "the rule's Lambda target never ran"
        time.sleep(0.2)
    assert any(marker in n["message"] for n in mini_twin.notifications.read())  # the topic target


def test_put_events_limits(mini_twin: Twin) -> None:
    entry = {"Source": "mini.other", "DetailType": "x", "Detail": "{}"}
    with pytest.raises(ClientError) as caught:
        mini_twin.client("events").put_events(Entries=[entry] * 11)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as caught:
        mini_twin.client("events").put_events(Entries=[{**entry, "Detail": json.dumps({"x": "y" * 300_000})}])
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_the_cli_lists_rules_and_puts_events(mini_twin: Twin) -> None:
    assert aws_json(mini_twin, "events", "list-rules")["Rules"][0]["Name"] == _rule(mini_twin)
    entries = json.dumps([{"Source": "mini.cli", "DetailType": "x", "Detail": "{}"}])
    assert aws_json(mini_twin, "events", "put-events", "--entries", entries)["FailedEntryCount"] == 0
    done = aws_cli(mini_twin, "events", "put-rule", "--name", "r", "--schedule-expression", "rate(1 hour)", check=False)
    assert done.returncode != 0 and "events:PutRule is not implemented by the local twin" in done.stderr
