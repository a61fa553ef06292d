"""The synthesized app on the twin, as a user of the AWS CLI sees it with ``AWS_ENDPOINT_URL`` set:
every answer comes from what the twin runs (issue 15), never from an empty default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from examples.generate_data import generate, write_csv
from mlops.twin import control
from mlops.twin.assembly import Assembly

pytestmark = pytest.mark.e2e
MODEL = "tumor-classifier"


def _aws(handle: control.TwinHandle, *args: str, check: bool = True) -> Any:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ENDPOINT_URL": handle.endpoint,
        "AWS_ACCESS_KEY_ID": "anything",
        "AWS_SECRET_ACCESS_KEY": "anything",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    cli = Path(sys.executable).with_name("aws")
    done = subprocess.run(
        [sys.executable, str(cli), *args, "--output", "json"], capture_output=True, text=True, env=env, timeout=120
    )
    if not check:
        return done
    assert done.returncode == 0, f"aws {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_the_cli_sees_what_the_twin_runs(twin: control.TwinHandle, cdk_out: Path, tmp_path: Path) -> None:
    assembly = Assembly(cdk_out)

    def names(rtype: str) -> set[str]:
        return {r.physical_id for r in assembly.resources(rtype) if assembly.included(r)}

    # four per instance model, two per serverless one (5XX and latency: no capture, no drift or quality)
    alarms = _aws(twin, "cloudwatch", "describe-alarms")["MetricAlarms"]
    assert {a["AlarmName"] for a in alarms} == names("AWS::CloudWatch::Alarm") and len(alarms) >= 6
    groups = {g["logGroupName"] for g in _aws(twin, "logs", "describe-log-groups")["logGroups"]}
    assert names("AWS::Logs::LogGroup") <= groups
    functions = {f["FunctionName"]: f for f in _aws(twin, "lambda", "list-functions")["Functions"]}
    assert set(functions) == set(twin.state["functions"])
    assert all(f["LoggingConfig"]["LogGroup"] in groups for f in functions.values())  # each names its own group
    rules = {r["Name"] for r in _aws(twin, "events", "list-rules")["Rules"]}
    assert rules == {r.physical_id for r in assembly.resources("AWS::Events::Rule")}
    topics = {t["TopicArn"] for t in _aws(twin, "sns", "list-topics")["Topics"]}
    assert topics == {r.arn for r in assembly.resources("AWS::SNS::Topic")}

    # A bad upload runs the validate Lambda: its log is read back as `aws logs` reads CloudWatch Logs.
    bad = write_csv(generate(MODEL, "bad", 500, seed=3), tmp_path / "bad.csv")
    key = f"incoming/{MODEL}/bad-{time.time_ns()}.csv"
    twin.client().upload_file(str(bad), twin.bucket("incoming"), key)
    control.wait_for_executions(twin.workdir, key, timeout_s=180)
    validate = next(f for f in functions.values() if "ValidateFn" in f["FunctionName"])
    group = validate["LoggingConfig"]["LogGroup"]
    found = _aws(twin, "logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", "REPORT")
    assert found["events"] and all(e["message"].startswith("REPORT RequestId:") for e in found["events"])
    streams = _aws(twin, "logs", "describe-log-streams", "--log-group-name", group)["logStreams"]
    assert {e["logStreamName"] for e in found["events"]} <= {s["logStreamName"] for s in streams}
    mentions = _aws(twin, "logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", f'"{key}"')
    assert mentions["events"], f"the validate Lambda's log never mentions {key}"

    # An alarm's history, with a state change set from the CLI (a latency alarm: no retrain hangs on it).
    alarm = next(a["AlarmName"] for a in alarms if "atency" in a["AlarmName"])
    _aws(twin, "cloudwatch", "set-alarm-state", "--alarm-name", alarm, "--state-value", "ALARM",
         "--state-reason", "checking the history")  # fmt: skip
    history = _aws(twin, "cloudwatch", "describe-alarm-history", "--alarm-name", alarm)["AlarmHistoryItems"]
    summaries = [i["HistorySummary"] for i in history]
    assert f'Alarm "{alarm}" created' in summaries
    assert any("checking the history" in i["HistoryData"] for i in history if i["HistoryItemType"] == "StateUpdate")

    refused = _aws(twin, "cloudwatch", "delete-alarms", "--alarm-names", alarm, check=False)
    assert refused.returncode != 0 and "cloudwatch:DeleteAlarms is not implemented by the local twin" in refused.stderr
    assert _aws(twin, "cloudwatch", "describe-alarms", "--alarm-names", alarm)["MetricAlarms"]
