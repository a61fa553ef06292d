"""The CloudWatch API of the twin in each protocol SDKs speak (json, smithy-rpc-v2-cbor, query): metrics,
the assembly's alarms, their history and SetAlarmState; alarm state, history and metrics survive restarts."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.model
import pytest
from botocore.exceptions import ClientError

from mlops.twin import control
from mlops.twin.runtime import Twin
from tests.unit.twin.mini_app import aws_cli, aws_json, running, write_assembly

ALARM = "mini-errors"
TOPIC = "arn:aws:sns:us-east-1:000000000000:mini-alerts"


@pytest.fixture(params=["json", "smithy-rpc-v2-cbor", "query"])
def cloudwatch(request: pytest.FixtureRequest, mini_twin: Twin, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A CloudWatch client of the twin that speaks one protocol (botocore picks json unless told otherwise)."""
    monkeypatch.setattr(botocore.model, "PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", (request.param,))
    client = boto3.session.Session().client(
        "cloudwatch",
        endpoint_url=mini_twin.endpoint,
        region_name="us-east-1",
        aws_access_key_id="operator",
        aws_secret_access_key="operator",
    )
    sent: list[str] = []
    client.meta.events.register("before-send", lambda request, **_: sent.append(request.headers.get("Content-Type")))
    yield client
    expected = {"json": b"application/x-amz-json-1.0", "smithy-rpc-v2-cbor": b"application/cbor"}.get(request.param)
    wanted = expected or b"application/x-www-form-urlencoded; charset=utf-8"
    assert sent and all((t if isinstance(t, bytes) else str(t).encode()) == wanted for t in sent), sent


def _now(twin: Twin) -> datetime:
    return datetime.fromtimestamp(twin.clock.now(), UTC)


def test_metrics_round_trip(cloudwatch: Any, mini_twin: Twin) -> None:
    namespace = f"Test{time.time_ns()}"
    now = _now(mini_twin)
    a, b, ms = [{"Name": "api", "Value": "a"}], [{"Name": "api", "Value": "b"}], "Milliseconds"
    cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {"MetricName": "Latency", "Dimensions": a, "Value": 10.0, "Unit": ms},
            {"MetricName": "Latency", "Dimensions": a, "Values": [20.0, 30.0], "Counts": [1, 2], "Unit": ms},
            {"MetricName": "Latency", "Dimensions": b,
             "StatisticValues": {"SampleCount": 4, "Sum": 8, "Minimum": 1, "Maximum": 3}},
        ],
    )  # fmt: skip
    start, end = now.replace(second=0, microsecond=0), now.replace(second=0, microsecond=0).timestamp() + 120
    stats = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="Latency",
        Dimensions=[{"Name": "api", "Value": "a"}],
        StartTime=start,
        EndTime=datetime.fromtimestamp(end, UTC),
        Period=60,
        Statistics=["SampleCount", "Sum", "Average", "Maximum"],
    )["Datapoints"]
    assert len(stats) == 1
    assert stats[0]["SampleCount"] == 4 and stats[0]["Sum"] == 90 and stats[0]["Average"] == 22.5
    assert stats[0]["Maximum"] == 30 and stats[0]["Unit"] == "Milliseconds"
    p50 = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="Latency", Dimensions=[{"Name": "api", "Value": "a"}], StartTime=start,
        EndTime=datetime.fromtimestamp(end, UTC), Period=60, ExtendedStatistics=["p50"],
    )["Datapoints"]  # fmt: skip
    assert p50[0]["ExtendedStatistics"] == {"p50": 20.0}
    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": "b", "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": "Latency",
             "Dimensions": [{"Name": "api", "Value": "b"}]}, "Period": 60, "Stat": "Average"}},
        ],
        StartTime=start,
        EndTime=datetime.fromtimestamp(end, UTC),
    )["MetricDataResults"]  # fmt: skip
    assert data[0]["Id"] == "b" and data[0]["Values"] == [2.0] and data[0]["StatusCode"] == "Complete"
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    assert sorted(m["Dimensions"][0]["Value"] for m in listed) == ["a", "b"]
    assert cloudwatch.list_metrics(Namespace=namespace, Dimensions=[{"Name": "api", "Value": "b"}])["Metrics"] == [
        {"Namespace": namespace, "MetricName": "Latency", "Dimensions": [{"Name": "api", "Value": "b"}]}
    ]


def test_bad_requests_get_cloudwatch_s_errors(cloudwatch: Any) -> None:
    def code(**call: Any) -> str:
        operation = call.pop("op")
        with pytest.raises(ClientError) as caught:
            getattr(cloudwatch, operation)(**call)
        return str(caught.value.response["Error"]["Code"])

    datum = {"MetricName": "m", "Value": 1.0}
    assert code(op="put_metric_data", Namespace="AWS/Lambda", MetricData=[datum]) == "InvalidParameterValue"
    both = {**datum, "Values": [1.0]}
    assert code(op="put_metric_data", Namespace="Mine", MetricData=[both]) == "InvalidParameterCombination"
    now = datetime.now(UTC)
    math_query = [{"Id": "e", "Expression": "SUM(METRICS())"}]
    assert code(op="get_metric_data", MetricDataQueries=math_query, StartTime=now, EndTime=now) == "NotImplemented"
    assert code(op="set_alarm_state", AlarmName="nope", StateValue="OK", StateReason="x") == "ResourceNotFound"
    bad_json = {"AlarmName": ALARM, "StateValue": "OK", "StateReason": "x", "StateReasonData": "{"}
    assert code(op="set_alarm_state", **bad_json) == "InvalidFormat"
    assert code(op="delete_alarms", AlarmNames=[ALARM]) == "NotImplemented"
    with pytest.raises(cloudwatch.exceptions.ResourceNotFound):  # modeled errors map to the SDK's exceptions
        cloudwatch.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="x")


def test_alarms_are_the_assembly_s(cloudwatch: Any, mini_twin: Twin) -> None:
    (alarm,) = cloudwatch.describe_alarms()["MetricAlarms"]
    assert alarm["AlarmName"] == ALARM and alarm["AlarmActions"] == [TOPIC]
    assert alarm["Namespace"] == "Mini" and alarm["Statistic"] == "Sum" and alarm["Threshold"] == 1.0
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "echo"}]
    assert alarm["StateValue"] in ("INSUFFICIENT_DATA", "OK", "ALARM")
    assert cloudwatch.describe_alarms(AlarmNamePrefix="other")["MetricAlarms"] == []
    assert cloudwatch.describe_alarms(AlarmTypes=["CompositeAlarm"])["MetricAlarms"] == []


def test_set_alarm_state_acts_and_is_in_the_history(mini_twin: Twin) -> None:
    cloudwatch = mini_twin.client("cloudwatch")
    reason = f"testing {time.time_ns()}"
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason=reason, StateReasonData='{"a": 1}')
    alarm = cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]
    assert alarm["StateValue"] == "ALARM" and alarm["StateReason"] == reason
    assert json.loads(alarm["StateReasonData"]) == {"a": 1}
    items = cloudwatch.describe_alarm_history(AlarmName=ALARM)["AlarmHistoryItems"]
    update = next(i for i in items if i["HistoryItemType"] == "StateUpdate" and reason in i["HistoryData"])
    assert update["HistorySummary"].endswith("to ALARM")
    assert json.loads(update["HistoryData"])["newState"]["stateReason"] == reason
    action = next(i for i in items if i["HistoryItemType"] == "Action")
    assert action["HistorySummary"] == f"Successfully executed action {TOPIC}"
    sent = [json.loads(n["message"]) for n in mini_twin.notifications.read() if n["topic"] == TOPIC]
    assert any(m.get("AlarmName") == ALARM and m.get("NewStateReason") == reason for m in sent)
    events = [json.loads(line) for line in (mini_twin.workdir / "events.jsonl").read_text().splitlines()]
    changes = [e["event"] for e in events if e.get("event", {}).get("detail-type") == "CloudWatch Alarm State Change"]
    assert changes[-1]["detail"]["state"] == {"value": "ALARM", "reason": reason, "timestamp": changes[-1]["time"]}
    created = cloudwatch.describe_alarm_history(AlarmName=ALARM, HistoryItemType="ConfigurationUpdate")
    assert [i["HistorySummary"] for i in created["AlarmHistoryItems"]] == [f'Alarm "{ALARM}" created']
    # The state holds until the next evaluation, which finds no data (notBreaching): OK again.
    deadline = time.monotonic() + 10
    while cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"] == "ALARM":
        assert time.monotonic() < deadline
        mini_twin.tick()
        time.sleep(0.1)
    assert (
        cloudwatch.describe_alarm_history(AlarmName=ALARM, MaxRecords=1)["AlarmHistoryItems"][0]["HistorySummary"]
        == "Alarm updated from ALARM to OK"
    )


def test_a_function_s_emf_metric_drives_the_alarm(mini_twin: Twin) -> None:
    echo = next(n for n in mini_twin.functions if "EchoFn" in n)
    mini_twin.client("lambda").invoke(FunctionName=echo, Payload=json.dumps({"errors": 5}))
    cloudwatch = mini_twin.client("cloudwatch")
    deadline = time.monotonic() + 15
    while cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"] != "ALARM":
        assert time.monotonic() < deadline, "the alarm never saw the function's metric"
        mini_twin.tick()  # what the daemon does every second: logs -> EMF metrics, alarms evaluated
        time.sleep(0.1)
    listed = cloudwatch.list_metrics(Namespace="Mini")["Metrics"]
    assert {"Namespace": "Mini", "MetricName": "Errors", "Dimensions": [{"Name": "service", "Value": "echo"}]} in listed


def test_the_cli_describes_alarms_and_their_history(mini_twin: Twin) -> None:
    alarms = aws_json(mini_twin, "cloudwatch", "describe-alarms")["MetricAlarms"]
    assert [a["AlarmName"] for a in alarms] == [ALARM]
    other = "OK" if alarms[0]["StateValue"] == "ALARM" else "ALARM"  # a change of state is what history records
    aws_cli(mini_twin, "cloudwatch", "set-alarm-state", "--alarm-name", ALARM, "--state-value", other,
            "--state-reason", "from the CLI")  # fmt: skip
    items = aws_json(mini_twin, "cloudwatch", "describe-alarm-history", "--alarm-name", ALARM)["AlarmHistoryItems"]
    assert any("from the CLI" in i["HistoryData"] for i in items)
    aws_cli(mini_twin, "cloudwatch", "put-metric-data", "--namespace", "Cli", "--metric-name", "m", "--value", "3")
    assert aws_json(mini_twin, "cloudwatch", "list-metrics", "--namespace", "Cli")["Metrics"][0]["MetricName"] == "m"


# -- durability --------------------------------------------------------------------------------------


@pytest.fixture
def assembly(tmp_path: Path) -> Path:
    return write_assembly(tmp_path)


def test_alarm_state_history_and_metrics_survive_a_restart(assembly: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    with running(Twin(assembly, workdir)) as twin:
        twin.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="before restart")
        twin.client("cloudwatch").put_metric_data(Namespace="Kept", MetricData=[{"MetricName": "m", "Value": 7.0}])
        before = twin.client("cloudwatch").describe_alarm_history(AlarmName=ALARM)["AlarmHistoryItems"]
    with running(Twin(assembly, workdir)) as again:
        cloudwatch = again.client("cloudwatch")
        alarm = cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]
        assert (alarm["StateValue"], alarm["StateReason"]) == ("ALARM", "before restart")
        assert cloudwatch.describe_alarm_history(AlarmName=ALARM)["AlarmHistoryItems"] == before  # not "created" again
        assert cloudwatch.list_metrics(Namespace="Kept")["Metrics"][0]["MetricName"] == "m"


@pytest.fixture
def daemon_workdir(tmp_path: Path) -> Iterator[Path]:
    workdir = tmp_path / "daemon"
    yield workdir
    running = control.status(workdir)
    if running is not None:  # our child: stopped and reaped here (control.stop would wait on the zombie)
        pid = int(running.state["pid"])
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


def test_alarm_history_metrics_and_logs_survive_kill_9(assembly: Path, daemon_workdir: Path) -> None:
    handle = control.start(assembly, daemon_workdir, port=0)
    cloudwatch = handle.client("cloudwatch")
    handle.client("lambda").invoke(FunctionName="mini-plain", Payload=b'"logged before the crash"')
    cloudwatch.put_metric_data(Namespace="Kept", MetricData=[{"MetricName": "m", "Value": 7.0}])
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="before the crash")
    before = cloudwatch.describe_alarm_history(AlarmName=ALARM, ScanBy="TimestampAscending")["AlarmHistoryItems"]
    pid = int(handle.state["pid"])
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # our child (control.start ran it): reaped, it is gone
    handle = control.start(assembly, daemon_workdir, port=0)
    cloudwatch = handle.client("cloudwatch")
    after = cloudwatch.describe_alarm_history(AlarmName=ALARM, ScanBy="TimestampAscending")["AlarmHistoryItems"]
    assert after[: len(before)] == before
    assert before[-1]["HistorySummary"] != "Alarm updated from ALARM to OK"
    # Restored in ALARM (not INSUFFICIENT_DATA), the alarm's first evaluation finds no data: back to OK.
    deadline = time.monotonic() + 90
    while not any(i["HistorySummary"] == "Alarm updated from ALARM to OK" for i in after[len(before) :]):
        assert time.monotonic() < deadline
        time.sleep(0.5)
        after = cloudwatch.describe_alarm_history(AlarmName=ALARM, ScanBy="TimestampAscending")["AlarmHistoryItems"]
    assert cloudwatch.list_metrics(Namespace="Kept")["Metrics"]
    found = handle.client("logs").filter_log_events(logGroupName="/aws/lambda/mini-plain", filterPattern='"before the"')
    assert [e["message"] for e in found["events"]] == ["plain got logged before the crash"]
